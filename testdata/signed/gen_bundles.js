#!/usr/bin/env node
// Generates the Sigstore bundles of testdata/signed/bundles (see README.md there)
// with the real signing libraries of sigstore-js: @sigstore/sign builds the
// bundles, @sigstore/mock plays Fulcio (certificate authority + CT log) and Rekor
// (transparency log), and trusted_root.json lists their keys. The services are
// reached over HTTP through nock interceptors, so nothing leaves the machine.
// No timestamp authority: the Rekor entry supplies the verified time.
//
//   bash e2e/install-tools.sh --signing      # installs the npm packages below
//   node testdata/signed/gen_bundles.js
//
// The clock of the mock services is fixed (SIGNED_AT) so that the tests can
// name the integrated time they expect.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { createRequire } = require('module');

const HERE = __dirname;
const TOOLS = process.env.PORTCULLIS_SIGNING_TOOLS
  || path.join(HERE, '..', '..', 'e2e', '.signing-tools');
const need = createRequire(path.join(TOOLS, 'package.json'));
const sign = need('@sigstore/sign');
const bundle = need('@sigstore/bundle');
const mock = need('@sigstore/mock');
const specs = need('@sigstore/protobuf-specs');
const nock = need('nock');

const SIGNED_AT = new Date('2026-11-20T10:00:00Z');
const ROOT_VALID_FROM = new Date('2026-01-01T00:00:00Z');
const FULCIO = 'https://fulcio.mock.portcullis.test';
const REKOR = 'https://rekor.mock.portcullis.test';
const ISSUER = 'https://token.actions.githubusercontent.com';
const SUBJECT = 'https://github.com/acme/app/.github/workflows/scan.yml@refs/heads/main';

const digests = JSON.parse(fs.readFileSync(path.join(HERE, 'digests.json'), 'utf8'));
const out = (rel, data) => {
  const p = path.join(HERE, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, typeof data === 'string' || Buffer.isBuffer(data) ? data : JSON.stringify(data, null, 2) + '\n');
};
const version = (name) => JSON.parse(fs.readFileSync(path.join(TOOLS, 'node_modules', name, 'package.json'), 'utf8')).version;

function intercept(base, handler) {
  nock(base).persist().post(handler.path).reply(async (_uri, body) => {
    const req = typeof body === 'string' ? body : JSON.stringify(body);
    const { statusCode, response, contentType } = await handler.fn(req);
    return [statusCode, response, { 'Content-Type': contentType || 'text/plain' }];
  });
}

// The mock Rekor logs the proposed entry as sent. A real Rekor stores a `dsse`
// entry in canonical form (hashes of the envelope and payload, and the
// signatures with their verifiers), which is what verifiers parse; do the same.
function canonicalizingRekor(tlog) {
  const inner = mock.rekorHandler(tlog);
  return {
    path: inner.path,
    fn: async (body) => {
      const proposed = JSON.parse(body);
      if (proposed.kind !== 'dsse') return inner.fn(body);
      const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');
      const { envelope, verifiers } = proposed.spec.proposedContent;
      const env = JSON.parse(envelope);
      const canonical = {
        apiVersion: proposed.apiVersion,
        kind: 'dsse',
        spec: {
          envelopeHash: { algorithm: 'sha256', value: sha256(envelope) },
          payloadHash: { algorithm: 'sha256', value: sha256(Buffer.from(env.payload, 'base64')) },
          signatures: env.signatures.map((sig, i) => ({ signature: sig.sig, verifier: verifiers[i] || verifiers[0] })),
        },
      };
      return inner.fn(JSON.stringify(canonical));
    },
  };
}

// A signer holding a local P-256 key: the "public key hint" flavour of bundles.
function keySigner(privateKey, publicPem) {
  const hint = crypto.createHash('sha256').update(crypto.createPublicKey(publicPem).export({ type: 'spki', format: 'der' })).digest('base64');
  return {
    async sign(data) {
      return {
        signature: crypto.sign('sha256', data, privateKey),
        key: { $case: 'publicKey', publicKey: publicPem, hint },
      };
    },
  };
}

function unsignedJwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
}

async function main() {
  nock.disableNetConnect();
  const caKeys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ctKeys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const tlogKeys = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ctlog = await mock.initializeCTLog(ctKeys, SIGNED_AT);
  const ca = await mock.initializeCA(caKeys, ctlog, SIGNED_AT);
  const tlog = await mock.initializeTLog(REKOR, tlogKeys, SIGNED_AT);
  intercept(FULCIO, mock.fulcioHandler(ca));
  intercept(REKOR, canonicalizingRekor(tlog));

  const der = (k) => k.export({ type: 'spki', format: 'der' });
  const trustedRoot = specs.TrustedRoot.toJSON({
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [{
      baseUrl: REKOR,
      hashAlgorithm: specs.HashAlgorithm.SHA2_256,
      publicKey: { rawBytes: tlog.publicKey, keyDetails: specs.PublicKeyDetails.PKIX_ECDSA_P256_SHA_256, validFor: { start: ROOT_VALID_FROM } },
      logId: { keyId: crypto.createHash('sha256').update(tlog.publicKey).digest() },
    }],
    certificateAuthorities: [{
      subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
      uri: FULCIO,
      certChain: { certificates: [{ rawBytes: Buffer.from(ca.rootCertificate.buffer) }] },
      validFor: { start: ROOT_VALID_FROM },
    }],
    ctlogs: [{
      baseUrl: 'https://ctfe.mock.portcullis.test',
      hashAlgorithm: specs.HashAlgorithm.SHA2_256,
      publicKey: { rawBytes: der(ctKeys.publicKey), keyDetails: specs.PublicKeyDetails.PKIX_ECDSA_P256_SHA_256, validFor: { start: ROOT_VALID_FROM } },
      logId: { keyId: Buffer.from(ctlog.logID.buffer) },
    }],
    timestampAuthorities: [],
  });
  out('bundles/trusted_root.json', trustedRoot);

  const rekor = new sign.RekorWitness({ rekorBaseURL: REKOR, entryType: 'dsse', majorApiVersion: 1, retry: 0 });
  const rekorHashed = new sign.RekorWitness({ rekorBaseURL: REKOR, majorApiVersion: 1, retry: 0 });

  // The statement about the image: the same cosign vuln statement as the DSSE files.
  const dsse = JSON.parse(fs.readFileSync(path.join(HERE, 'dsse/cosign-vuln.p256.dsse.json'), 'utf8'));
  const statementBytes = Buffer.from(dsse.payload, 'base64');
  const reportManifest = fs.readFileSync(path.join(HERE, 'cosign/report-manifest.json'));
  const asJson = (b) => bundle.bundleToJSON(b);
  const dsseArtifact = { data: statementBytes, type: 'application/vnd.in-toto+json' };

  // Key-signed ("public key hint"), logged.
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' });
  out('bundles/bundle-key.pub', publicPem);
  const keyed = keySigner(privateKey, publicPem);
  out('bundles/key-dsse.sigstore.json', asJson(await new sign.DSSEBundleBuilder({ signer: keyed, witnesses: [rekor] }).create(dsseArtifact)));
  out('bundles/key-message.sigstore.json', asJson(await new sign.MessageSignatureBundleBuilder({ signer: keyed, witnesses: [rekorHashed] }).create({ data: reportManifest })));
  // Key-signed, no log entry: refused when the producer requires the log.
  out('bundles/key-dsse-no-tlog.sigstore.json', asJson(await new sign.DSSEBundleBuilder({ signer: keyed, witnesses: [] }).create(dsseArtifact)));

  // Keyless: an ephemeral key certified by the mock Fulcio for a CI identity.
  const identityProvider = { getToken: async () => unsignedJwt({ iss: ISSUER, sub: SUBJECT, aud: 'sigstore' }) };
  const fulcio = new sign.FulcioSigner({ fulcioBaseURL: FULCIO, identityProvider, retry: 0 });
  out('bundles/keyless-dsse.sigstore.json', asJson(await new sign.DSSEBundleBuilder({ signer: fulcio, witnesses: [rekor] }).create(dsseArtifact)));
  out('bundles/keyless-message.sigstore.json', asJson(await new sign.MessageSignatureBundleBuilder({ signer: fulcio, witnesses: [rekorHashed] }).create({ data: reportManifest })));

  out('bundles/generated-with.json', {
    signedAt: SIGNED_AT.toISOString(),
    keyless: { issuer: ISSUER, subject: SUBJECT },
    node: process.version,
    '@sigstore/sign': version('@sigstore/sign'),
    '@sigstore/bundle': version('@sigstore/bundle'),
    '@sigstore/mock': version('@sigstore/mock'),
    '@sigstore/protobuf-specs': version('@sigstore/protobuf-specs'),
    artifacts: {
      'key-dsse / keyless-dsse / key-dsse-no-tlog': `DSSE in-toto statement about ${digests.image} (payload of dsse/cosign-vuln.p256.dsse.json)`,
      'key-message / keyless-message': `message signature over cosign/report-manifest.json (${digests.reportManifest})`,
    },
  });
}

main().catch((e) => { console.error(e); process.exit(1); });
