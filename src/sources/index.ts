export {
  createSourceStore,
  SOURCE_FORMATS,
  type SourceFormat,
  type SourceInfo,
  type SourceStore,
  type SourceStoreOptions,
} from './store.js';
export { SourceTooLargeError, UnsupportedMediaTypeError, SourceNotFoundError } from './errors.js';
