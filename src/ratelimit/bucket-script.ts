/**
 * The token bucket as one atomic Redis script: the same step as token-bucket.ts, but with
 * Redis's own clock, so replicas whose clocks disagree still share one timeline.
 *
 * KEYS[1]  the bucket (a hash: t = tokens, ts = ms of the last update)
 * ARGV     capacity, refillPerSecond, cost
 * returns  { allowed (0|1), tokens left (string, full precision) }
 *
 * Numbers go back as strings because Redis truncates Lua numbers to integers. The key
 * expires when a full bucket would have refilled: an absent key is a full bucket, so
 * expiry loses nothing and idle callers cost no memory.
 */
export const TOKEN_BUCKET_LUA = `
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + tonumber(now_parts[2]) / 1000
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])

local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = capacity
  updated = now
end

local elapsed = now - updated
if elapsed < 0 then elapsed = 0 end
tokens = math.min(capacity, tokens + elapsed * rate / 1000)

local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end

local ttl = math.ceil((capacity - tokens) * 1000 / rate)
if ttl < 1 then ttl = 1 end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ttl)
return { allowed, string.format('%.17g', tokens) }
`;

/**
 * The Redis key of a bucket. The whole bucket identity is the hash tag, so in a cluster a
 * bucket lives on exactly one slot while different callers spread over all masters.
 */
export function redisBucketKey(bucketKey: string): string {
  return `gatehouse:{${bucketKey}}`;
}
