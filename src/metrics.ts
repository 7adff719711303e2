/**
 * Prometheus exposition with a registry per server instance (tests run several in one process).
 * Gauges are collected on scrape from the pipeline's own counters: nothing to keep in step.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { DiskStats } from './cache/index.js';
import type { Pipeline } from './pipeline/index.js';

export function createMetrics(pipeline: Pipeline, disk?: { stats(): DiskStats }) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  gauge('clarity_limiter_active', 'Engine jobs in flight', () => pipeline.stats().limiter.active);
  gauge('clarity_limiter_pending', 'Engine jobs waiting for a slot', () => pipeline.stats().limiter.pending);
  gauge('clarity_limiter_window_submissions', 'Submissions in the current 60 s window', () => pipeline.stats().limiter.windowCount);
  gauge('clarity_masters_in_flight', 'Distinct masters being made', () => pipeline.stats().mastersInFlight);
  if (disk) {
    new Gauge({
      name: 'clarity_disk_bytes',
      help: 'Bytes in the disk tier, by entry kind',
      labelNames: ['kind'] as const,
      registers: [registry],
      collect() {
        for (const [kind, { bytes }] of Object.entries(disk.stats().byKind)) this.set({ kind }, bytes);
      },
    });
    gauge('clarity_disk_max_bytes', 'CACHE_DISK_MAX_BYTES', () => disk.stats().maxBytes);
    gauge('clarity_disk_pinned_bytes', 'Disk bytes eviction may never take (paid masters, sources, jobs)', () => disk.stats().pinnedBytes);
  }
  new Counter({
    name: 'clarity_engine_calls_total',
    help: 'Engine calls (each a billable job for a paid engine)',
    labelNames: ['engine'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [engine, calls] of Object.entries(pipeline.stats().engineCalls)) this.inc({ engine }, calls);
    },
  });
  return {
    registry,
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
