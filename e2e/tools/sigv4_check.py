#!/usr/bin/env python3
"""Recomputes the AWS SigV4 Authorization header of a request with botocore,
an implementation independent of the webhook's (aws-sigv4), for the e2e tests.

Reads JSON on stdin: method, url, headers (the signed ones but host), body,
access_key, secret_key, token, region, service, amz_date (the request's
X-Amz-Date, so both sign at the same time). Prints the Authorization value.
"""
import datetime
import json
import sys

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main():
    r = json.load(sys.stdin)
    when = datetime.datetime.strptime(r["amz_date"], "%Y%m%dT%H%M%SZ")
    # botocore reads the clock itself; sign at the request's own time.
    botocore.auth.get_current_datetime = lambda *a, **k: when
    request = AWSRequest(
        method=r["method"],
        url=r["url"],
        headers=dict(r["headers"]),
        data=r["body"].encode(),
    )
    creds = Credentials(r["access_key"], r["secret_key"], r["token"])
    botocore.auth.SigV4Auth(creds, r["service"], r["region"]).add_auth(request)
    print(request.headers["Authorization"])


if __name__ == "__main__":
    main()
