import * as grpc from '@grpc/grpc-js';
import * as net from 'node:net';
import { checkClient } from '../helpers/grpc-client';
import { EXAMPLE_POLICIES } from '../helpers/policies';
import { CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';
import { startTestServer, type TestServer } from '../helpers/server';
import { waitFor } from '../helpers/wait';

const FRAME = { HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6 } as const;
const END_HEADERS = 0x4;
const CANCEL = Buffer.from([0, 0, 0, 8]);

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}

/** HPACK literal without indexing, its name from the static table. */
function literal(nameIndex: number, value: string): Buffer {
  return Buffer.concat([Buffer.from([nameIndex, value.length]), Buffer.from(value, 'latin1')]);
}

/** A Check request's headers: POST, http, :path, :authority, content-type. */
const CHECK_HEADERS = Buffer.concat([
  Buffer.from([0x83, 0x86]),
  literal(0x04, '/envoy.service.auth.v3.Authorization/Check'),
  literal(0x01, 'gatehouse'),
  Buffer.from([0x00, 12]),
  Buffer.from('content-type', 'latin1'),
  Buffer.from([16]),
  Buffer.from('application/grpc', 'latin1'),
]);

const FLOODS: Record<string, (i: number) => Buffer[]> = {
  'PING frames': () => [frame(FRAME.PING, 0, 0, Buffer.alloc(8))],
  'SETTINGS frames': () => [frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0))],
  'streams opened and reset at once (rapid reset)': (i) => [
    frame(FRAME.HEADERS, END_HEADERS, 1 + 2 * i, CHECK_HEADERS),
    frame(FRAME.RST_STREAM, 0, 1 + 2 * i, CANCEL),
  ],
};

/** Sends the preface and `count` flood units in one write; resolves with how long until the server closed it. */
function flood(port: number, unit: (i: number) => Buffer[], count: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1', () => {
      const parts = [
        Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
        frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0)),
      ];
      for (let i = 0; i < count; i++) parts.push(...unit(i));
      socket.write(Buffer.concat(parts));
    });
    socket.on('error', () => undefined);
    socket.resume(); // reads the server's answers, as a peer that is only fast would
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the flooding connection was still open after 20 s'));
    }, 20_000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
}

describe('control-frame floods', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ policiesDir: EXAMPLE_POLICIES });
  });
  afterAll(async () => {
    await server.stop();
  });

  test.each(Object.keys(FLOODS))(
    'a connection flooding %s is closed, and a well-behaved client is answered (or refused fast) throughout',
    async (kind) => {
      const client = checkClient(server.port, { ownConnection: true });
      const request = envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET' });
      await client.check(request);
      const closed = flood(server.port, FLOODS[kind]!, 20_000);
      // While the flood is read, a check is answered or, if the flood has lagged the event
      // loop past --shed-lag, refused fast (fail closed); it never waits behind the flood.
      const during = await Promise.all(
        Array.from({ length: 5 }, () =>
          client.check(request, 5000).then(
            (a) => a.status?.code ?? 0,
            (err: grpc.ServiceError) =>
              err.code === grpc.status.RESOURCE_EXHAUSTED ? -1 : err.code,
          ),
        ),
      );
      expect(during.every((code) => code === 0 || code === -1)).toBe(true);
      expect(await closed).toBeLessThan(20_000);
      await waitFor(
        () =>
          client.check(request, 1000).then(
            (a) => (a.status?.code ?? 0) === 0,
            () => false,
          ),
        'a check answered after the flood',
        5000,
      );
      client.close();
    },
    40_000,
  );
});
