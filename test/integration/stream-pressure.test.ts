import * as http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_SHEDDING } from '../../src/server/shedding';
import { EXAMPLE_POLICIES } from '../helpers/policies';
import { startTestServer, type TestServer } from '../helpers/server';

const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

/** The next SETTINGS from the server whose stream limit is `streams`, or a failure after 5 s. */
function settingsWith(session: http2.ClientHttp2Session, streams: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no SETTINGS with ${streams} streams`)), 5000);
    const check = (settings: http2.Settings) => {
      if (settings.maxConcurrentStreams !== streams) return;
      clearTimeout(timer);
      session.off('remoteSettings', check);
      resolve();
    };
    session.on('remoteSettings', check);
    if (session.remoteSettings?.maxConcurrentStreams === streams) check(session.remoteSettings);
  });
}

function openStream(session: http2.ClientHttp2Session): void {
  const stream = session.request(
    { ':method': 'POST', ':path': CHECK_PATH, 'content-type': 'application/grpc', te: 'trailers' },
    { endStream: true },
  );
  stream.on('error', () => undefined);
  stream.resume();
}

/** Keeps this process's event loop (the in-process server's too) busy for `ms`. */
function blockEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy on purpose: this is the lag under test
  }
}

describe('back-pressure while the event loop is behind', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      policiesDir: EXAMPLE_POLICIES,
      shedding: DEFAULT_SHEDDING,
    });
  });
  afterAll(() => server.stop());

  test('a connection is asked for one stream at a time while the loop lags, and for its full share after', async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on('error', () => undefined);
    try {
      // Loading this test may itself have lagged the loop: let that pressure pass first.
      await sleep(1300);
      openStream(session);
      await settingsWith(session, 8);
      openStream(session);
      await sleep(100);
      expect(session.remoteSettings.maxConcurrentStreams).toBe(8); // no lag, nothing asked

      blockEventLoop(200);
      await sleep(50); // the lag sampler runs late and notes it
      openStream(session);
      await settingsWith(session, 1);

      await sleep(1300); // the pressure holds 1 s after the last lagging sample
      openStream(session);
      await settingsWith(session, 8);
    } finally {
      session.destroy();
    }
  });
});
