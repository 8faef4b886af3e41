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
FROM ${BASE_IMAGE}

# Unbuffered output: SageMaker scrapes metrics from stdout/stderr and shows them in
# CloudWatch; buffered lines would arrive late or be lost when the job is stopped.
# No .pyc files: the code is often replaced at run time by the `code` channel.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH="/opt/program:${PATH}"

WORKDIR /opt/program

# Requirements first, in their own layer, so that editing training code does not
# reinstall every dependency.
COPY sagemaker_container/requirements.txt /opt/program/requirements.txt
RUN python3 -m pip install --no-cache-dir -r /opt/program/requirements.txt

COPY sagemaker_container/ /opt/program/
# The executable bit may be lost on the way (e.g. a checkout on Windows).
RUN chmod 0755 /opt/program/train

CMD ["train"]
