import { windowKey } from './types';

/**
 * The quarantine as atomic Redis scripts. Every key carries the hash tag
 * `{gatehouse-quarantine}` so one script may touch them all in a Redis Cluster; the price
 * is that all quarantine traffic lands on one slot, which is acceptable because only
 * denials (not every check) reach it.
 *
 * Shared calling convention:
 *   KEYS[1]  the entries hash (caller -> entry JSON)
 *   KEYS[2]  the change counter (every published change takes the next number)
 *   ARGV[1]  the pub/sub channel
 *   ARGV[2]  deadline in Redis ms ('0' = none): past it the script refuses to act, so a call
 *            the replica already gave up on (frozen or slow Redis) cannot later change state
 *            without anyone emitting the event for it.
 * returns   the list of change messages it published, in order (JSON, see QuarantineMessage)
 *
 * Times come from Redis's own clock (TIME) so replicas with skewed clocks share one
 * timeline. They are whole ms, which cjson (14 significant digits) encodes exactly.
 * `until` is a Lua keyword, hence the ['until'] spelling.
 */
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local channel = ARGV[1]
local deadline = tonumber(ARGV[2])
if deadline > 0 and now > deadline then
  return redis.error_reply('GATEHOUSE_LATE quarantine call arrived after its deadline; nothing changed')
end
local out = {}

local function announce(message)
  message.seq = redis.call('INCR', KEYS[2])
  local text = cjson.encode(message)
  redis.call('PUBLISH', channel, text)
  out[#out + 1] = text
end

-- The caller's entry while it is active; an entry whose time is up is removed here, and the
-- removal is announced once, by whichever script gets to it first.
local function active_entry(caller)
  local raw = redis.call('HGET', KEYS[1], caller)
  if not raw then return nil end
  local entry = cjson.decode(raw)
  if tonumber(entry['until']) > now then return entry end
  redis.call('HDEL', KEYS[1], caller)
  announce({ type = 'leave', cause = 'expired', entry = entry })
  return nil
end
`;

/**
 * One denial. KEYS[3] is the (policy, caller) ZSET of denial times, which never holds more
 * than `denials` members: reaching that trips and deletes it.
 * ARGV[3..9]  caller, policy, denials, windowMs, durationMs, dryRun ('1'|'0'), unique member
 */
export const RECORD_DENIAL_LUA = `${PRELUDE}
local caller = ARGV[3]
local dry = ARGV[8] == '1'
local active = active_entry(caller)
-- Denials caused by the quarantine itself must not extend it or re-enter.
if active and ((not active.dryRun) or dry) then return out end

local window = math.ceil(tonumber(ARGV[6]))
redis.call('ZADD', KEYS[3], now, ARGV[9])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[3])
if count >= tonumber(ARGV[5]) then
  redis.call('DEL', KEYS[3])
  local entry = { caller = caller, policy = ARGV[4], since = now, ['until'] = now + math.ceil(tonumber(ARGV[7])), denials = count, dryRun = dry }
  redis.call('HSET', KEYS[1], caller, cjson.encode(entry))
  announce({ type = 'enter', entry = entry })
else
  redis.call('PEXPIRE', KEYS[3], window)
end
return out
`;

/** Removes the caller's entry if its time is up. ARGV[3] caller. */
export const EXPIRE_LUA = `${PRELUDE}
active_entry(ARGV[3])
return out
`;

/** Operator release. ARGV[3] caller. An entry already past its time leaves as expired instead. */
export const RELEASE_LUA = `${PRELUDE}
local active = active_entry(ARGV[3])
if active then
  redis.call('HDEL', KEYS[1], ARGV[3])
  announce({ type = 'leave', cause = 'released', entry = active })
end
return out
`;

/**
 * The whole state at one instant: { Redis now, last change number, HGETALL entries }.
 * Reading the counter in the same script is what lets a replica merge this snapshot with
 * change messages that cross it in flight.
 */
export const SNAPSHOT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('GET', KEYS[2]) or '0'
return { tostring(now), seq, redis.call('HGETALL', KEYS[1]) }
`;

/** The hash tag every quarantine key shares (one cluster slot, one script may touch them all). */
export const QUARANTINE_HASH_TAG = '{gatehouse-quarantine}';

export interface QuarantineKeys {
  readonly entries: string;
  readonly seq: string;
  readonly channel: string;
  denials(policy: string, caller: string): string;
}

export function quarantineKeys(prefix: string): QuarantineKeys {
  const base = `${prefix}:${QUARANTINE_HASH_TAG}`;
  return {
    entries: `${base}:entries`,
    seq: `${base}:seq`,
    // Not a key: pub/sub channels are not hashed to slots (PUBLISH reaches the whole cluster).
    channel: `${prefix}:quarantine`,
    denials: (policy, caller) => `${base}:d:${windowKey(policy, caller)}`,
  };
}
