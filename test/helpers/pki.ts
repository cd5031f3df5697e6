import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

export interface Issued {
  readonly cert: string;
  readonly key: string;
  readonly certPem: string;
  readonly keyPem: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A throwaway CA made with openssl, issuing SPIFFE X509-SVIDs and server certificates. */
export class TestCa {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'gh-pki-'));
  readonly cert: string;
  private readonly key: string;
  private serial = 1;

  constructor(readonly name: string) {
    this.key = path.join(this.dir, `${name}-ca.key`);
    this.cert = path.join(this.dir, `${name}-ca.pem`);
    openssl(
      ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', this.key],
      this.dir,
    );
    openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        this.key,
        '-subj',
        `/O=${name}/CN=${name} CA`,
        '-days',
        '2',
        '-out',
        this.cert,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      this.dir,
    );
  }

  /** A leaf with the given subjectAltName (e.g. `URI:spiffe://td/x` or `DNS:localhost,IP:127.0.0.1`). */
  issue(
    name: string,
    san: string,
    extra: string[] = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature'],
  ): Issued {
    const key = path.join(this.dir, `${name}.key`);
    const csr = path.join(this.dir, `${name}.csr`);
    const cert = path.join(this.dir, `${name}.pem`);
    const ext = path.join(this.dir, `${name}.ext`);
    writeFileSync(ext, [`subjectAltName=${san}`, ...extra].join('\n'));
    openssl(
      ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key],
      this.dir,
    );
    openssl(['req', '-new', '-key', key, '-subj', `/CN=${name}`, '-out', csr], this.dir);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        this.cert,
        '-CAkey',
        this.key,
        '-set_serial',
        String(this.serial++),
        '-days',
        '1',
        '-extfile',
        ext,
        '-out',
        cert,
      ],
      this.dir,
    );
    return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
  }
}
