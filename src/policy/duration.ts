const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `15m`, `12h`, `30d` → milliseconds; undefined when not of that form. */
export function parseDuration(text: string): number | undefined {
  let i = 0;
  while (i < text.length && text.charCodeAt(i) >= 0x30 && text.charCodeAt(i) <= 0x39) i++;
  if (i === 0 || i > 7 || text.charCodeAt(0) === 0x30) return undefined;
  const unit = UNIT_MS[text.slice(i)];
  return unit === undefined ? undefined : Number(text.slice(0, i)) * unit;
}

/** The shortest exact form, for messages and reports. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
