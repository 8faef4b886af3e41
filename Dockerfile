# Training image for sagebook, following the SageMaker training container contract:
# SageMaker starts it as `docker run IMAGE train`, so `train` must be an executable on PATH,
# and there is no ENTRYPOINT (SDK local mode runs the image's default command instead).
#
# Build it with ./build_and_push.sh, which builds for linux/amd64 (the architecture of
# SageMaker training hosts). When building by hand on an ARM machine, pass
# `--platform linux/amd64` yourself.
#
# BASE_IMAGE lets a team start from a deep-learning base instead of plain Python, e.g.
#   --build-arg BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
# Any base works that provides `python3` with pip. The default pins the Python minor version
# and the Debian release; pin a digest (python:3.11-slim-bookworm@sha256:...) when the base
# must be bit-for-bit reproducible. The pushed image itself is always referenced by digest.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# The sagemaker-training toolkit, as AWS's framework images have it: with it, `train` gives the
# training code the toolkit's SM_* variables (sagebook's `image_environment: toolkit`, the
# default, under which local runs give the same). PyPI has only its source, with a C extension:
# it is built into a wheel here, so the image itself carries no compiler. An image built without
# this stage gives no SM_* variables: set `image_environment: sagemaker` for it.
FROM ${BASE_IMAGE} AS toolkit
ARG SAGEMAKER_TRAINING_VERSION=5.1.4
# The compiler's version is the base image's distribution's: there is nothing to pin it to.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels \
        "sagemaker-training==${SAGEMAKER_TRAINING_VERSION}"

FROM ${BASE_IMAGE}

# Unbuffered output: SageMaker scrapes metrics from stdout/stderr and shows them in
# CloudWatch; buffered lines would arrive late or be lost when the job is stopped.
# No .pyc files: the code is often replaced at run time by the `code` channel.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH="/opt/program:${PATH}"

WORKDIR /opt/program

COPY --from=toolkit /wheels /tmp/wheels
RUN python3 -m pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels

# Requirements first, in their own layer, so that editing training code does not
# reinstall every dependency.
COPY sagemaker_container/requirements.txt /opt/program/requirements.txt
RUN python3 -m pip install --no-cache-dir -r /opt/program/requirements.txt

COPY sagemaker_container/ /opt/program/
# The executable bit may be lost on the way (e.g. a checkout on Windows).
RUN chmod 0755 /opt/program/train

CMD ["train"]
