"""A local stand-in for the AWS Price List API (moto has none): an HTTP server on 127.0.0.1
that answers `GetProducts` (JSON 1.1 protocol, as boto3 sends it) from a recorded sample,
applying TERM_MATCH filters and paging with MaxResults / NextToken as the API does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).parent / "data" / "pricing_get_products.json"


class FakePricing:
    def __init__(self, sample: Path = SAMPLE, page_size: int = 2):
        self.products: list[dict[str, Any]] = json.loads(sample.read_text())["PriceList"]
        self.page_size = page_size
        self.calls: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                target = self.headers.get("X-Amz-Target", "")
                fake.calls.append({"target": target, **body})
                if target != "AWSPriceListService.GetProducts":
                    self._send(400, {"__type": "InvalidParameterException",
                                     "Message": f"unsupported {target}"})
                    return
                self._send(200, fake.get_products(body))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def get_products(self, body: dict[str, Any]) -> dict[str, Any]:
        def matches(product: dict[str, Any]) -> bool:
            attributes = {**product["product"]["attributes"],
                          "productFamily": product["product"]["productFamily"]}
            return all(attributes.get(f["Field"]) == f["Value"] for f in body.get("Filters", [])
                       if f.get("Type") == "TERM_MATCH")

        found = [p for p in self.products if p["serviceCode"] == body.get("ServiceCode")
                 and matches(p)]
        start = int(body.get("NextToken") or 0)
        size = min(int(body.get("MaxResults") or self.page_size), self.page_size)
        answer: dict[str, Any] = {"FormatVersion": "aws_v1",
                                  "PriceList": [json.dumps(p) for p in found[start:start + size]]}
        if start + size < len(found):
            answer["NextToken"] = str(start + size)
        return answer

    def __enter__(self) -> FakePricing:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
