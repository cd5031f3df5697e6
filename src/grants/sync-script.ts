/**
 * One grant version's usage state in Redis, pushed and pulled in one atomic script call.
 *
 * KEYS[1]  the version's hash (see grantVersionKey):
 *            since               ms the first replica saw the version
 *            g:<rule>|<entry>    ms of the last grant-wide renewal
 *            u:<rule>|<entry>|<caller>  ms of the caller's last use
 *            r:<rule>|<entry>|<caller>  ms of the caller's last renewal
 * ARGV     ttl ms, since, expectExisting (1|0), then field, value pairs of g:/u:/r: fields
 * returns  the whole hash (HGETALL), or -1 when expectExisting is 1 and the key is gone
 *
 * `since` is only ever set if absent, so the first replica to see a version starts its clock
 * for everyone. Every other field keeps its maximum: flushes may arrive late or twice (a timed
 * out call can still run after a reconnect) and must never move a clock back. The TTL is
 * refreshed on every call; it outlives the longest idle limit, so state of removed policies
 * vanishes on its own.
 *
 * A replica that has loaded the key before and finds it missing is looking at lost data (a
 * Redis restart without persistence, a failover before replication): recreating it from the
 * pending uses alone would forget every earlier use and deny callers wholesale. The -1 tells
 * the replica to re-seed the key from its mirror instead.
 */
export const GRANT_SYNC_LUA = `
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
redis.call('HSETNX', KEYS[1], 'since', ARGV[2])
for i = 4, #ARGV - 1, 2 do
  local incoming = tonumber(ARGV[i + 1])
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if current == nil or incoming > current then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return redis.call('HGETALL', KEYS[1])
`;

/**
 * The Redis key of one policy version's grant state. One hash tag for all of them keeps every
 * grant key in one cluster slot, so a later multi-key script (or a pipeline) stays possible;
 * the state is small and written once per flush interval per replica.
 */
export function grantVersionKey(prefix: string, policy: string, version: string): string {
  return `${prefix}:{grants}:${policy}@${version}`;
}
