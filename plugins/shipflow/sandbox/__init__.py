"""The Shipflow sandbox: a local AWS endpoint that behaves like AWS for release automation.

It is moto's server, extended in the same process (no fork) so that CodeBuild builds, CodeDeploy
deployments and CloudFormation stack operations progress over time, fail and roll back, CloudWatch
alarms evaluate real metric data, and a control API injects faults for tests and failure drills.

Layout, one module per AWS service as in every other layer of Shipflow:

- ``server``: builds the WSGI app (moto + the ``/_shipflow`` control API) and serves it.
- ``control``: the control API handlers; ``client``: its Python client (used by tests and the CLI).
- ``faults``: the fault registry and the hook into moto's request dispatch (throttling, latency).
- ``lifecycle``: step-by-step state progressions whose speed moto's state manager controls.
- ``world``: state shared across services (which revision serves traffic for a deployment group).
- ``codebuild``, ``codedeploy``, ``cloudformation``, ``cloudwatch``: the per-service extensions.
- ``seed``: creates the AWS resources the example services refer to, through boto3.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4566
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"
CONTROL_PREFIX = "/_shipflow"
