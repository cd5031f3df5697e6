import * as path from 'node:path';

/** protos/ sits beside src/ and dist/, so one relative path serves both. */
export const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'protos');
