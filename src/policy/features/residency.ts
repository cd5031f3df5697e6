import { clipText, type NormalizedRequest } from '../../request/normalize';
import { isHeaderName } from './header-name';

/**
 * Where a request's data goes: the destination's region, read from the Envoy node's labels
 * (`destination.labels`, set through `bootstrap_metadata_labels_key`), a per-route context
 * extension, or a header a trusted proxy sets.
 */
export type RegionSource = { readonly kind: 'label' | 'context' | 'header'; readonly name: string };

export interface CompiledResidency {
  readonly regions: ReadonlySet<string>;
  readonly from: RegionSource;
}

const PREFIXES = ['label:', 'context:', 'header:'] as const;

/** `label:<key>`, `context:<key>` or `header:<lower-case name>`; undefined when invalid. */
export function parseRegionSource(text: string): RegionSource | undefined {
  for (const prefix of PREFIXES) {
    if (!text.startsWith(prefix)) continue;
    const name = text.slice(prefix.length);
    if (name.length === 0 || name.length > 253) return undefined;
    // A name no request can carry would deny every request as "region unknown".
    if (prefix === 'header:' && !isHeaderName(name)) return undefined;
    return { kind: prefix.slice(0, -1) as RegionSource['kind'], name };
  }
  return undefined;
}

export function destinationRegion(
  source: RegionSource,
  request: NormalizedRequest,
): string | undefined {
  const value =
    source.kind === 'label'
      ? request.destinationLabels[source.name]
      : source.kind === 'context'
        ? request.contextExtensions[source.name]
        : request.headers[source.name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

export function residencyViolation(
  residency: CompiledResidency,
  request: NormalizedRequest,
): string | undefined {
  const region = destinationRegion(residency.from, request);
  if (region === undefined)
    return `destination region is unknown (${residency.from.kind} '${residency.from.name}' is not set), so data residency cannot be shown`;
  if (!residency.regions.has(region))
    return `data may not flow to region '${clipText(region, 64)}' (allowed: ${[...residency.regions].join(', ')})`;
  return undefined;
}
