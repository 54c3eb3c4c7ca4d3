"""TEST-BED STAND-IN for what a controller reaches over the network, so that its
kube-aws-addons script runs as written against the emulator:

- the instance metadata service (IMDSv2 token, region, instance id, the role's
  credentials), on a loopback port;
- AWS's HTTPS endpoints: a TLS proxy in front of moto, which speaks plain HTTP on
  loopback. moto routes by the Host header curl sends (ssm.REGION.amazonaws.com, the
  bucket's virtual host, kms.REGION...), as AWS does.

The test points curl at these with a .curlrc (`connect-to`, `insecure`); the script and
lib.sh are unchanged. Nothing here models AWS behaviour: the answers come from moto.

Usage: node_standin.py MOTO_PORT REGION CERT KEY [META_JSON]
META_JSON, when given, is a file of more metadata paths and values (instance id, local
hostname and address, instance tags, a spot notice...), read again on every request so
a test can change what the node sees. Prints "IMDS_PORT TLS_PORT" once listening;
serves until killed.
"""

import asyncio
import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MOTO_PORT = int(sys.argv[1])
REGION = sys.argv[2]
ROLE = "kube-aws-controller"
CREDS = {"Code": "Success", "AccessKeyId": "testing", "SecretAccessKey": "testing",
         "Token": "testing", "Expiration": "2099-01-01T00:00:00Z"}
META = {
    "/latest/meta-data/placement/region": REGION,
    "/latest/meta-data/instance-id": "i-0123456789abcdef0",
    "/latest/meta-data/iam/security-credentials/": ROLE,
    "/latest/meta-data/iam/security-credentials/" + ROLE: json.dumps(CREDS),
}


class Imds(BaseHTTPRequestHandler):
    def answer(self, code, body, ttl=None):
        data = body.encode()
        self.send_response(code)
        if ttl:
            # IMDSv2 answers a token with its TTL, which the AWS SDKs require.
            self.send_header("X-aws-ec2-metadata-token-ttl-seconds", ttl)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.path == "/latest/api/token":
            self.answer(200, "imds-token", self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "21600"))
        else:
            self.answer(404, "")

    def do_GET(self):
        meta = dict(META)
        if len(sys.argv) > 5:
            with open(sys.argv[5]) as f:
                meta.update(json.load(f))
        if self.headers.get("X-aws-ec2-metadata-token") != "imds-token":
            self.answer(401, "")
        elif self.path in meta:
            self.answer(200, meta[self.path])
        else:
            self.answer(404, "")

    def log_message(self, *args):
        pass


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def proxy(reader, writer):
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", MOTO_PORT)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)


async def main():
    imds = ThreadingHTTPServer(("127.0.0.1", 0), Imds)
    threading.Thread(target=imds.serve_forever, daemon=True).start()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    server = await asyncio.start_server(proxy, "127.0.0.1", 0, ssl=ctx)
    print(imds.server_address[1], server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
