export {
  createSourceStore,
  SOURCE_FORMATS,
  type DiskSourceStore,
  type SourceFormat,
  type SourceInfo,
  type SourceStore,
  type SourceStoreOptions,
  type SourceStoreStats,
} from './store.js';
export {
  SourceTooLargeError,
  UnsupportedMediaTypeError,
  SourceNotFoundError,
  OriginNotFoundError,
  OriginUnavailableError,
  OriginTimeoutError,
} from './errors.js';
export {
  createOriginFetcher,
  createOriginSources,
  type OriginFetcher,
  type OriginFetcherOptions,
  type OriginSources,
  type OriginSourcesOptions,
  type ResolvedOrigin,
} from './origin.js';
