import type { BucketSpec, LimitResult } from './types';

/** Mutable bucket state: tokens as of `updatedAtMs`. */
export interface BucketState {
  tokens: number;
  updatedAtMs: number;
}

/**
 * The reference token-bucket step. Every store implements exactly this: refill
 * continuously since the last update (capped at capacity), then take `cost` if there is
 * enough. A denied take does not consume anything. Mutates `state` in place so the
 * in-process store allocates nothing per check beyond the result.
 */
export function takeTokens(
  state: BucketState,
  spec: BucketSpec,
  cost: number,
  nowMs: number,
): LimitResult {
  const { capacity, refillPerSecond } = spec;
  const elapsedMs = nowMs > state.updatedAtMs ? nowMs - state.updatedAtMs : 0;
  let tokens = state.tokens + (elapsedMs * refillPerSecond) / 1000;
  if (tokens > capacity) tokens = capacity;
  state.updatedAtMs = nowMs;

  const allowed = tokens >= cost;
  if (allowed) tokens -= cost;
  state.tokens = tokens;
  return limitResult(spec, cost, allowed, tokens);
}

/** The answer for a take, from the tokens left after it. Shared by every store. */
export function limitResult(
  spec: BucketSpec,
  cost: number,
  allowed: boolean,
  tokensLeft: number,
): LimitResult {
  return {
    allowed,
    limit: spec.capacity,
    remaining: Math.floor(tokensLeft),
    resetSeconds: secondsUntil(spec.capacity - tokensLeft, spec.refillPerSecond),
    retryAfterSeconds: allowed
      ? 0
      : Math.max(1, secondsUntil(cost - tokensLeft, spec.refillPerSecond)),
  };
}

/** Milliseconds after `updatedAtMs` at which the bucket is full again. */
export function msUntilFull(state: BucketState, spec: BucketSpec): number {
  const missing = spec.capacity - state.tokens;
  return missing <= 0 ? 0 : (missing * 1000) / spec.refillPerSecond;
}

function secondsUntil(missingTokens: number, refillPerSecond: number): number {
  if (missingTokens <= 0) return 0;
  // Tiny float residue (1e-12 tokens) must not add a whole second.
  return Math.ceil(missingTokens / refillPerSecond - 1e-9);
}
