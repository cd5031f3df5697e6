#!/usr/bin/env node
// Heap bytes per in-process token bucket, whatever the key length: fills a MemoryBucketStore
// with N distinct keys of L characters and reports the heap growth after a forced GC.
// Usage: node --expose-gc bench/bucket-memory.js [buckets=200000] [keyLength=256]
'use strict';
const path = require('node:path');
const { MemoryBucketStore } = require(path.resolve(__dirname, '../dist/ratelimit/memory-store'));

const N = Number(process.argv[2] ?? 200_000);
const L = Number(process.argv[3] ?? 256);
if (typeof gc !== 'function') throw new Error('run with node --expose-gc');
const spec = { capacity: 10, refillPerSecond: 0.001 };
const pad = 'k'.repeat(Math.max(0, L - 12));

gc();
const before = process.memoryUsage();
const store = new MemoryBucketStore({ maxBuckets: N, now: () => 0 });
for (let i = 0; i < N; i++) store.take(`${pad}${String(i).padStart(12, '0')}`, spec, 1);
gc();
const after = process.memoryUsage();
const perBucket = (after.heapUsed - before.heapUsed) / N;
console.log(
  JSON.stringify({
    buckets: store.size,
    keyLength: L,
    heapBytesPerBucket: Math.round(perBucket),
    rssMiBGrowth: Math.round((after.rss - before.rss) / 1048576),
  }),
);
void store.close();
