import { BOUNDS_DOCS_GROUP } from './bounds-flags';
import { renderFlagTable } from './option-table';
import { SERVE_OPTIONS } from './serve-options';

/** Markers around the generated table in docs/cli.md (scripts/gen-cli-docs.js writes between them). */
export const SERVE_FLAGS_BEGIN =
  '<!-- serve flags: generated from src/cli/serve-options.ts by `make docs`; do not edit -->';
export const SERVE_FLAGS_END = '<!-- end of serve flags -->';

/** The `serve` flag table of docs/cli.md. */
export function serveFlagTable(): string {
  return renderFlagTable(SERVE_OPTIONS, {
    tls: {
      default: 'off',
      meaning:
        "serve the gRPC port (and the HTTP mode) over TLS and require client certificates chaining to `--client-ca`; the certificate's SPIFFE URI SAN names the asker (see Security model)",
    },
    bounds: BOUNDS_DOCS_GROUP,
  });
}
