#!/usr/bin/env node
import { askerOptionsProblem, serverTlsCredentials, type AskerOptions } from '../server/askers';
import { Command, Option } from 'commander';
import cluster from 'node:cluster';
import { promises as fs } from 'node:fs';
import type { Logger } from 'pino';
import { AdminServer } from '../admin/admin-server';
import { Gatehouse, type GatehouseOptions } from '../app';
import { PolicyLoadError } from '../serving/policy-holder';
import { verifyAuditPieces } from '../audit/chain';
import { readAuditKey } from '../audit/key';
import {
  isWorkerConfig,
  workerAuditPath,
  type AuditBatch,
  type WorkerConfig,
} from '../cluster/messages';
import { defaultWorkers } from '../cluster/cpus';
import { Supervisor } from '../cluster/supervisor';
import { buildBundle } from '../bundle/bundle';
import { BundlePoller } from '../bundle/poller';
import { watchPolicyDir } from '../policy/document/watch';
import { parseTrustBundleFlags } from '../identity/trust-bundle';
import { TrustBundleStore } from '../identity/trust-bundle-store';
import { runWorker } from '../cluster/worker';
import { createLogger } from '../log';
import { GATEHOUSE_VERSION } from '../metrics/metrics';
import { loadPolicyDir } from '../policy/load';
import { formatProblem } from '../policy/document/problems';
import { parseRedisUrl } from '../redis/connections';
import {
  adminCall,
  DEFAULT_ADMIN_URL,
  formatAccessReport,
  formatQuarantine,
  readAdminToken,
  type AdminClientFlags,
} from './admin-client';
import { runCheck } from './check';
import { addReplayCommands } from './replay';
import { addSuggestCommand } from './suggest';
import { runTestCommand } from './test-command';
import { fileErrorText } from '../util/file-error';
import { keyKindProblem } from '../bundle/key-pem';
import { collectList, intInRange, parsePositiveInt, validateTrustDomains } from './options';
import { boundsOptions } from './bounds-flags';
import {
  addServeOptions,
  SERVE_OPTIONS,
  serveFlagsProblem,
  type ServeFlags,
} from './serve-options';
import { switchEnvProblem } from './option-table';

const program = new Command();
program
  .name('gatehouse')
  .description(
    'Envoy external-authorization server: SPIFFE identity, per-route permissions, token buckets.',
  )
  .version(GATEHOUSE_VERSION, '-V, --version', 'print the Gatehouse version')
  .showHelpAfterError()
  // Before the subcommand reads its environment twins: a switch's twin must say true or false.
  .hook('preSubcommand', (_program, subcommand) => {
    if (subcommand.name() !== 'serve') return;
    const problem = switchEnvProblem(SERVE_OPTIONS, process.env);
    if (problem) fail(problem);
  });

addServeOptions(program.command('serve'))
  .description('run the ext_authz gRPC server')
  .action(async (opts: ServeFlags) => {
    const log = createLogger(opts.logLevel);
    let options = await gatehouseOptions(opts, log);
    // In-process buckets live in one process: N workers would each admit a full budget.
    const workers = opts.workers ?? (options.redis ? defaultWorkers() : 1);
    if (workers > 1 && !options.redis) {
      log.warn(
        { workers },
        'in-process rate limits are per worker: each of the workers admits a full budget; use --redis to share buckets',
      );
    }
    let bundle: BundlePoller | undefined;
    if (opts.bundle) {
      if (!opts.bundleKey)
        fail('--bundle needs --bundle-key (the public key bundles are signed with)');
      const pem = await fs
        .readFile(opts.bundleKey, 'utf8')
        .catch((e: unknown) => fail(fileErrorText(e, '--bundle-key', opts.bundleKey!)));
      const keyProblem = keyKindProblem(pem, 'public', `--bundle-key ${opts.bundleKey}`);
      if (keyProblem) fail(keyProblem);
      if (!opts.bundleState)
        log.warn(
          'no --bundle-state: older signed bundles are refused only while this process runs; a restart accepts any signed revision',
        );
      bundle = new BundlePoller(opts.bundle, pem, log, opts.bundleState);
      try {
        const active = await bundle.initial();
        options = { ...options, policiesDir: active.dir };
        log.info(
          { revision: active.payload.revision, version: active.payload.version },
          'bundle activated',
        );
      } catch (err) {
        fail(`refusing to start: bundle ${opts.bundle}: ${(err as Error).message}`);
      }
    }
    try {
      if (workers > 1) await servePrimary(options, workers, opts, log, bundle);
      else await serveSingle(options, opts, log, bundle);
    } catch (err) {
      if (err instanceof PolicyLoadError) {
        process.stderr.write(
          `gatehouse: refusing to start: ${opts.policies} has invalid policies\n`,
        );
        for (const p of err.problems) process.stderr.write(`${formatProblem(p)}\n`);
        process.exit(1);
      }
      fail(`cannot start: ${(err as Error).message}`);
    }
  });

/**
 * The server's options from validated flags; exits naming the flag on a value or combination
 * that cannot hold. The primary and every worker build their options here from the same flags.
 */
async function gatehouseOptions(opts: ServeFlags, log: Logger): Promise<GatehouseOptions> {
  const trustDomains = opts.trustDomain ?? [];
  const bad = validateTrustDomains(trustDomains);
  if (bad) fail(bad);
  const redis = redisOptions(opts);
  // The path travels to workers, never the key: each worker reads it itself; the primary reads
  // it first to refuse a bad key before forking.
  const auditKey = opts.auditKey
    ? await readAuditKey(opts.auditKey).catch((e: Error) =>
        fail(`refusing to start: --audit-key: ${e.message}`),
      )
    : undefined;
  let trustBundles;
  try {
    trustBundles = (await TrustBundleStore.open(parseTrustBundleFlags(opts.trustBundle ?? []), log))
      .bundles;
  } catch (err) {
    fail(`--trust-bundle: ${(err as Error).message}`);
  }
  return {
    policiesDir: opts.policies,
    grpcHost: opts.listenAddress,
    grpcPort: opts.grpcPort,
    trustDomains,
    trustXfcc: opts.trustXfcc === true,
    trustBundles,
    askers: askerFlags(opts),
    jwt: { audience: opts.jwtAudience, leewaySeconds: opts.jwtLeeway },
    ...(opts.httpPort !== undefined
      ? {
          http: {
            port: opts.httpPort,
            dialect: opts.httpDialect,
            ...(opts.httpPathPrefix ? { pathPrefix: opts.httpPathPrefix } : {}),
            ...(opts.httpClientCertHeader
              ? { certificateHeader: opts.httpClientCertHeader.toLowerCase() }
              : {}),
            maxBodyBytes: opts.httpMaxBody,
          },
        }
      : {}),
    auditLog: opts.auditLog,
    ...(auditKey ? { auditKey } : {}),
    drainTimeoutMs: opts.drainTimeout,
    shutdownWaitMs: opts.shutdownWait,
    ...(redis ? { redis } : {}),
    ...boundsOptions(opts),
  };
}

/** --workers 1: gRPC and admin in this process. */
async function serveSingle(
  options: GatehouseOptions,
  opts: ServeFlags,
  log: Logger,
  bundle: BundlePoller | undefined,
): Promise<void> {
  const app = await Gatehouse.start(options, log);
  const admin = new AdminServer(
    app.adminProviders(),
    log,
    opts.adminTokenFile ? { token: await readAdminToken(opts.adminTokenFile) } : {},
  );
  const adminPort = await admin.listen(opts.listenAddress, opts.adminPort);
  log.info({ adminPort }, 'admin serving');
  // A bundle is the source of truth when given: its directory is private, so nobody edits it.
  const watcher =
    opts.watch && !bundle
      ? watchPolicyDir(options.policiesDir, () => void app.reload(), log)
      : undefined;
  bundle?.registerMetrics(app.metrics.registry);
  bundle?.start(opts.bundlePoll * 1000, async (b) => (await app.switchDirectory(b.dir)).ok);
  onStopSignals(log, async () => {
    watcher?.close();
    bundle?.stop();
    await app.stop();
    await bundle?.removeFiles();
    await admin.close();
  });
  process.on('SIGHUP', () => void app.reload());
  // logrotate's postrotate: `kill -USR1` (or POST /v1/audit/reopen) after renaming the audit file.
  process.on('SIGUSR1', () => void app.reopenAudit());
}

async function servePrimary(
  options: GatehouseOptions,
  workers: number,
  opts: ServeFlags,
  log: Logger,
  bundle: BundlePoller | undefined,
): Promise<void> {
  const adminToken = opts.adminTokenFile ? await readAdminToken(opts.adminTokenFile) : undefined;
  const supervisor = await Supervisor.start(
    {
      workers,
      adminHost: opts.listenAddress,
      adminPort: opts.adminPort,
      gatehouse: options,
      workerFlags: opts,
      ...(adminToken ? { adminToken } : {}),
    },
    log,
  );
  const watcher =
    opts.watch && !bundle
      ? watchPolicyDir(options.policiesDir, () => void supervisor.reload(), log)
      : undefined;
  bundle?.registerMetrics(supervisor.metricsRegistry);
  bundle?.start(opts.bundlePoll * 1000, (b) => supervisor.reload(b.dir));
  onStopSignals(log, async () => {
    watcher?.close();
    bundle?.stop();
    await supervisor.stop();
    await bundle?.removeFiles();
  });
  process.on('SIGHUP', () => void supervisor.reload());
  process.on('SIGUSR2', () => void supervisor.rollingRestart());
  process.on('SIGUSR1', () => void supervisor.reopenAudit());
}

function sendAuditToPrimary(batch: string, done: (err: Error | null) => void): void {
  const message: AuditBatch = { type: 'gatehouse:audit', batch };
  if (!process.send || !process.connected) return done(new Error('the primary is gone'));
  process.send(message, undefined, {}, (err) => done(err ?? null));
}

/**
 * A worker of `--workers N`: serves the flags the primary parsed and validated, sent over IPC
 * with its slot and the directory being served; it reads neither argv nor the environment.
 */
async function serveWorker(config: WorkerConfig): Promise<void> {
  const flags = serveFlagsProblem(config.flags);
  if (typeof flags === 'string')
    fail(`worker ${config.slot}: configuration from the primary: ${flags}`);
  const log = createLogger(flags.logLevel);
  const options = await gatehouseOptions(flags, log);
  // One hash chain per worker file; workers sharing stdout write each record whole.
  const auditLog = options.auditLog ? workerAuditPath(options.auditLog, config.slot) : undefined;
  // Workers sharing stdout send their records to the primary, the one writer, so no two
  // processes' lines can interleave however long a record is.
  const auditSink = auditLog === undefined ? sendAuditToPrimary : undefined;
  try {
    await runWorker(
      {
        ...options,
        policiesDir: config.policiesDir,
        auditLog,
        ...(auditSink ? { auditSink } : {}),
      },
      config.slot,
      log,
    );
  } catch (err) {
    fail(`worker ${config.slot}: cannot start: ${(err as Error).message}`);
  }
}

function onStopSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}

program
  .command('test')
  .description('run the policy tests (*.test.yaml) beside the policies')
  .argument('<dir>', 'policy directory')
  .option('--junit <file>', 'also write the results as JUnit XML')
  .option('--coverage', 'list the rules and allow/deny entries no case exercised')
  .option(
    '--trust-domain <domain>',
    "trusted SPIFFE trust domain (repeatable; default: the test file's, else those the policies name)",
    collectList,
  )
  .action(
    async (dir: string, opts: { junit?: string; coverage?: boolean; trustDomain?: string[] }) => {
      process.exitCode = await runTestCommand(dir, opts);
    },
  );

const bundleCommand = program.command('bundle').description('signed policy bundles for CI/CD');
bundleCommand
  .command('build')
  .description('validate and test DIR, then pack it into one file signed with your private key')
  .argument('<dir>', 'policy directory (policies and their *.test.yaml)')
  .requiredOption('-o, --output <file>', 'bundle file to write')
  .requiredOption('--key <file>', 'private key (PKCS#8 PEM, Ed25519 or ECDSA P-256/P-384)')
  .option(
    '--revision <n>',
    'bundle revision; must grow with every bundle (default: now, in ms)',
    parsePositiveInt,
  )
  .action(async (dir: string, o: { output: string; key: string; revision?: number }) => {
    const pem = await fs
      .readFile(o.key, 'utf8')
      .catch((e: unknown) => fail(fileErrorText(e, '--key', o.key)));
    const keyProblem = keyKindProblem(pem, 'private', `--key ${o.key}`);
    if (keyProblem) fail(keyProblem);
    try {
      const { jws, payload, testsRun } = await buildBundle(dir, pem, o.revision);
      await fs.writeFile(o.output, `${jws}\n`);
      process.stdout.write(
        `bundle ${o.output}: revision ${payload.revision}, version ${payload.version}, ${Object.keys(payload.files).length} files, ${testsRun} policy tests passed\n`,
      );
    } catch (err) {
      fail((err as Error).message);
    }
  });

program
  .command('audit')
  .description('audit log tools')
  .command('verify')
  .description("verify an audit log's hash chains; exit 1 naming the first broken record")
  .argument(
    '<files...>',
    'audit log (JSON lines); rotated pieces of one log oldest first (audit.log.2 audit.log.1 audit.log)',
  )
  .option(
    '--key <file>',
    'the --audit-key the log was written with; needed for keyed records, and then every record must be keyed',
  )
  .option(
    '--from-seq <n>',
    'the first piece follows a record already verified: its seq (printed as the chain end by the previous verify)',
    intInRange(0, Number.MAX_SAFE_INTEGER, 'a seq'),
  )
  .option('--from-hash <hash>', 'the hash of that record')
  .option(
    '--mid-chain',
    'accept chains that start mid-way on their own first record, unchecked before it (say so)',
  )
  .action(
    async (
      files: string[],
      opts: { key?: string; fromSeq?: number; fromHash?: string; midChain?: boolean },
    ) => {
      if ((opts.fromSeq === undefined) !== (opts.fromHash === undefined))
        fail(
          '--from-seq and --from-hash go together: the seq and hash of the last record before the first piece',
        );
      if (opts.fromHash !== undefined && !/^[0-9a-f]{64}$/.test(opts.fromHash))
        fail('--from-hash must be a record hash: 64 lower-case hex digits');
      const key = opts.key
        ? await readAuditKey(opts.key).catch((e: Error) => fail(`--key: ${e.message}`))
        : undefined;
      const pieces = [];
      for (const file of files)
        pieces.push({
          name: file,
          text: await fs
            .readFile(file, 'utf8')
            .catch((e: unknown) => fail(fileErrorText(e, 'audit log', file))),
        });
      const anchor =
        opts.fromSeq !== undefined && opts.fromHash !== undefined
          ? { seq: opts.fromSeq, hash: opts.fromHash }
          : undefined;
      const result = verifyAuditPieces(pieces, key, {
        ...(anchor ? { anchor } : {}),
        midChain: opts.midChain === true,
      });
      if (!result.ok) {
        const where =
          result.error!.line > 0
            ? `${result.error!.piece ?? files[0]}:${result.error!.line}`
            : files.join(' ');
        process.stdout.write(`${where}: ${result.error!.message}\n`);
        process.stdout.write(`FAILED after ${result.records} intact record(s)\n`);
        process.exit(1);
      }
      process.stdout.write(
        `ok: ${result.records} record(s) in ${result.chains} chain(s), every ${key ? 'HMAC matches the key' : 'hash intact'}\n`,
      );
      for (const u of result.unanchored ?? [])
        process.stdout.write(
          `unchecked start: chain ${u.chain} begins at seq ${u.seq}; records before it were not verified\n`,
        );
      // The anchor for verifying the next piece on its own.
      for (const end of result.ends ?? [])
        process.stdout.write(
          `chain ${end.chain} ends at --from-seq ${end.seq} --from-hash ${end.hash}\n`,
        );
    },
  );

program
  .command('validate')
  .description('check policies; prints every problem as file:line:col message')
  .argument('<dir>', 'policy directory')
  .action(async (dir: string) => {
    const result = await loadPolicyDir(dir);
    const problems = result.ok ? result.warnings : result.problems;
    for (const p of problems) process.stdout.write(`${formatProblem(p)}\n`);
    if (!result.ok) {
      const errors = problems.filter((p) => p.severity === 'error').length;
      process.stderr.write(`${errors} error${errors === 1 ? '' : 's'}\n`);
      process.exit(1);
    }
    const count = result.set.policies.length;
    process.stdout.write(
      `ok: ${count} ${count === 1 ? 'policy' : 'policies'}, version ${result.set.version}\n`,
    );
  });

program
  .command('check')
  .description('decide one CheckRequest (proto3 JSON) and explain the decision')
  .argument('<dir>', 'policy directory')
  .requiredOption('--input <file>', 'CheckRequest as JSON ("-" for stdin)')
  .option('--trust-domain <domain>', 'trusted SPIFFE trust domain (repeatable)', collectList)
  .option('--trust-xfcc', 'trust the nearest x-forwarded-client-cert element')
  .option('--json', 'print the decision and the CheckResponse as JSON')
  .action(
    async (
      dir: string,
      opts: { input: string; trustDomain?: string[]; trustXfcc?: boolean; json?: boolean },
    ) => {
      const bad = validateTrustDomains(opts.trustDomain ?? []);
      if (bad) fail(bad);
      const text =
        opts.input === '-'
          ? await readStdin()
          : await fs
              .readFile(opts.input, 'utf8')
              .catch((e: unknown) => fail(fileErrorText(e, '--input', opts.input)));
      const code = await runCheck(dir, text, {
        trustDomains: opts.trustDomain ?? [],
        trustXfcc: opts.trustXfcc === true,
        json: opts.json === true,
      });
      process.exitCode = code;
    },
  );

addReplayCommands(program);
addSuggestCommand(program);

/** Who may ask the Check port, from the flags; exits on a combination that cannot hold. */
function askerFlags(opts: ServeFlags): AskerOptions {
  const tlsFlags = [opts.tlsCert, opts.tlsKey, opts.clientCa].filter((f) => f !== undefined).length;
  if (tlsFlags !== 0 && tlsFlags !== 3)
    fail(
      '--tls-cert, --tls-key and --client-ca go together: askers are authenticated by client certificates',
    );
  const options: AskerOptions = {
    ...(opts.tlsCert && opts.tlsKey && opts.clientCa
      ? { tls: { certFile: opts.tlsCert, keyFile: opts.tlsKey, clientCaFile: opts.clientCa } }
      : {}),
    askers: opts.askers ?? [],
    gateways: opts.gatewayAskers ?? [],
    fromXfcc: opts.askerFromXfcc === true,
  };
  if (options.tls && options.fromXfcc)
    fail(
      "--asker-from-xfcc is for a plaintext port behind Gatehouse's own sidecar; with --tls-cert the client certificate names the asker",
    );
  const problem = askerOptionsProblem(options);
  if (problem !== undefined) fail(problem);
  if (options.tls) {
    try {
      serverTlsCredentials(options.tls);
    } catch (err) {
      fail(`cannot use --tls-cert/--tls-key/--client-ca: ${(err as Error).message}`);
    }
  }
  return options;
}

function redisOptions(
  opts: ServeFlags,
): { url?: string; clusterUrls?: string[]; timeoutMs: number } | undefined {
  if (opts.redis && opts.redisCluster?.length) fail('give --redis or --redis-cluster, not both');
  const urls = opts.redisCluster?.length ? opts.redisCluster : opts.redis ? [opts.redis] : [];
  for (const url of urls) {
    try {
      parseRedisUrl(url);
    } catch (err) {
      fail(`${opts.redis ? '--redis' : '--redis-cluster'}: ${(err as Error).message}`);
    }
  }
  if (opts.redisCluster?.length)
    return { clusterUrls: opts.redisCluster, timeoutMs: opts.redisTimeout };
  if (opts.redis) return { url: opts.redis, timeoutMs: opts.redisTimeout };
  return undefined;
}

function fail(message: string): never {
  process.stderr.write(`gatehouse: ${message}\n`);
  process.exit(1);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function adminClientOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--admin <url>', 'admin API of a running gatehouse')
        .default(DEFAULT_ADMIN_URL)
        .env('GATEHOUSE_ADMIN_URL'),
    )
    .addOption(
      new Option('--admin-token-file <file>', 'bearer token for changes from another host').env(
        'GATEHOUSE_ADMIN_TOKEN_FILE',
      ),
    )
    .option('--json', 'print the API answer as JSON');
}

/** Prints the answer, or fails with the API's error and exit 1. */
async function adminCommand(
  flags: AdminClientFlags,
  method: 'GET' | 'POST',
  path: string,
  body: unknown,
  ok: (json: Record<string, unknown>) => string,
): Promise<void> {
  const { status, json } = await adminCall(flags, method, path, body);
  if (status >= 400)
    fail(
      `${String(json['error'] ?? `admin API answered ${status}`)}${typeof json['caller'] === 'string' ? `: ${json['caller']}` : ''}`,
    );
  process.stdout.write(flags.json ? `${JSON.stringify(json, null, 2)}\n` : ok(json));
}

const quarantineCommand = program
  .command('quarantine')
  .description('callers isolated after repeated denials (mesh-wide with --redis)');
adminClientOptions(
  quarantineCommand.command('list').description('list quarantined callers'),
).action((flags: AdminClientFlags) =>
  adminCommand(flags, 'GET', '/v1/quarantine', undefined, (json) =>
    formatQuarantine(json['callers'] as Parameters<typeof formatQuarantine>[0]),
  ),
);
adminClientOptions(
  quarantineCommand
    .command('release')
    .description("end a caller's quarantine now")
    .argument('<spiffe-id>', 'the quarantined caller'),
).action((caller: string, flags: AdminClientFlags) =>
  adminCommand(flags, 'POST', '/v1/quarantine/release', { caller }, () => `released ${caller}\n`),
);

const accessCommand = program
  .command('access')
  .description('grants that expire from disuse (expiresAfterUnused)');
adminClientOptions(
  accessCommand
    .command('report')
    .description('grants by last use, oldest first, so stale access can be removed'),
).action((flags: AdminClientFlags) =>
  adminCommand(flags, 'GET', '/v1/access', undefined, (json) =>
    formatAccessReport(json['grants'] as Parameters<typeof formatAccessReport>[0]),
  ),
);
adminClientOptions(
  accessCommand
    .command('renew')
    .description("restart the disuse clock of a policy's grants (optionally one rule, one caller)")
    .argument('<policy>', 'policy name')
    .option('--rule <name>', 'only this rule')
    .option('--caller <spiffe-id>', 'only this caller'),
).action((policy: string, flags: AdminClientFlags & { rule?: string; caller?: string }) =>
  adminCommand(
    flags,
    'POST',
    '/v1/access/renew',
    {
      policy,
      ...(flags.rule ? { rule: flags.rule } : {}),
      ...(flags.caller ? { caller: flags.caller } : {}),
    },
    (json) => `renewed ${String(json['renewed'])} grant use(s) of policy ${policy}\n`,
  ),
);

if (cluster.isWorker) {
  // The configuration is the first message from the primary; later ones are runWorker's.
  process.once('message', (message: unknown) => {
    if (!isWorkerConfig(message))
      fail('worker: the first message from the primary is not its configuration');
    serveWorker(message).catch((err: Error) => fail(err.message));
  });
} else program.parseAsync(process.argv).catch((err: Error) => fail(err.message));
