"""A stand-in for the AWS CLI in the README walk-through test: `aws SERVICE OPERATION --name
value …` is the boto3 call of that name, made against AWS_ENDPOINT_URL like any boto3 call.

Values are taken as the CLI takes them: `file://PATH` is the file's text, `Key=Value,…` a
structure, a single value for a list parameter a list of one; `--region`, `--query` (JMESPath,
as the CLI's) and `--output text` (a list's values joined by tabs) work as the CLI's do.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3
import jmespath


def main(argv: list[str]) -> int:
    service, operation, rest = argv[0], argv[1], argv[2:]
    region = query = None
    output = "json"
    params: dict[str, object] = {}
    for name, value in zip(rest[::2], rest[1::2], strict=True):
        name = name.removeprefix("--")
        if name in ("region", "query", "output"):
            region, query, output = {"region": (value, query, output),
                                     "query": (region, value, output),
                                     "output": (region, query, value)}[name]
            continue
        parsed: object = value
        if value.startswith("file://"):
            parsed = Path(value.removeprefix("file://")).read_text()
        elif "=" in value and not value.lstrip().startswith("{"):
            parsed = dict(item.split("=", 1) for item in value.split(","))
        params[name] = parsed
    client = boto3.client({"s3api": "s3"}.get(service, service), region_name=region)
    members = client.meta.service_model.operation_model(
        "".join(word.capitalize() for word in operation.split("-"))).input_shape.members
    # `--image-ids` is `imageIds` in ECR's model and `--role-name` `RoleName` in IAM's
    spelled = {member.lower(): member for member in members}
    params = {spelled[name.replace("-", "")]: value for name, value in params.items()}
    for name, value in params.items():
        if members[name].type_name == "list" and not isinstance(value, list):
            params[name] = [value]
    answer = getattr(client, operation.replace("-", "_"))(**params)
    answer.pop("ResponseMetadata", None)
    if query:
        answer = jmespath.search(query, answer)
    if output == "text":
        print("\t".join(map(str, answer)) if isinstance(answer, list) else answer)
    else:
        print(json.dumps(answer, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
