export { MemoryQuarantineState, type MemoryQuarantineOptions } from './memory';
export { RedisQuarantineState, type RedisQuarantineOptions } from './redis';
export { quarantineKeys, QUARANTINE_HASH_TAG, type QuarantineKeys } from './scripts';
export * from './types';
