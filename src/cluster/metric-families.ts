/**
 * Metric families the primary answers for itself with --workers: a worker only sees what the
 * primary forwards (a rejected reload never reaches it, an accepted one reaches each of N), so
 * the workers' sum would not mean what the same name means without workers.
 */
export const PRIMARY_OWNED_FAMILIES: readonly string[] = ['gatehouse_policy_reloads_total'];

/** Prometheus text without the named families (their HELP, TYPE and sample lines). */
export function withoutFamilies(text: string, families: readonly string[]): string {
  const owned = new Set(families);
  return text
    .split('\n')
    .filter((line) => {
      const name = line.startsWith('# ') ? line.split(' ', 3)[2] : line.split(/[{ ]/, 1)[0];
      return name === undefined || !owned.has(name);
    })
    .join('\n');
}
