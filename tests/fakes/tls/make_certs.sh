#!/bin/sh
# Regenerates the test-only TLS material for loopback fakes whose SDK insists on wss:// (Cartesia).
# The CA is trusted by the test process only (`deno test --cert tests/fakes/tls/ca.pem`); never
# install it anywhere. A leaf signed by the CA is needed because rustls rejects a CA certificate
# presented as a server certificate (CaUsedAsEndEntity).
set -eu
cd "$(dirname "$0")"
days=7300 # 20 years: the committed files must not expire under the tests.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days "$days" \
  -subj "/CN=telnyx-outbound test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$work/ca.key" -out ca.pem

openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
  -keyout key.pem -out "$work/leaf.csr"

cat >"$work/leaf.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT

openssl x509 -req -in "$work/leaf.csr" -CA ca.pem -CAkey "$work/ca.key" -CAcreateserial \
  -CAserial "$work/ca.srl" -days "$days" -sha256 -extfile "$work/leaf.ext" -out cert.pem

chmod 644 key.pem # test-only key; readable so any user can run the tests

# The CA key is thrown away on purpose: nothing else can ever be signed by this test CA.
openssl verify -CAfile ca.pem cert.pem
