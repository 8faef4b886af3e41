#!/usr/bin/env bash
# Build the sagebook training image, push it to Amazon ECR and print its digest-pinned URI.
# Run with --help for the options and exit codes.
#
# Written for bash 3.2 as well (macOS's /bin/bash): no associative arrays, no ${x,,}, and
# possibly-empty arrays are expanded as ${a[@]+"${a[@]}"}.
set -euo pipefail

readonly E_USAGE=2 E_NO_AWS=3 E_NO_DOCKER=4 E_DOCKER_DOWN=5 E_NO_CREDENTIALS=6 \
    E_NO_REGION=7 E_DIRTY=8 E_NO_COMMIT=9 E_ECR=10 E_LOGIN=11 E_BUILD=12 E_PUSH=13 \
    E_DIGEST=14 E_CONFIG=15

readonly DEFAULT_NAME=sagebook-training DEFAULT_PLATFORM=linux/amd64
# The manifest type SageMaker is known to accept; see the check after the push.
readonly DOCKER_V2_MANIFEST=application/vnd.docker.distribution.manifest.v2+json

prog="$(basename -- "$0")"
repo_root="$(cd "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<EOF
Usage: $prog [--name NAME] [--tag TAG] [--dockerfile PATH] [--platform P]
       [--region R] [--profile P] [--update-config FILE] [--allow-dirty] [--dry-run]

Build the training image from the repository root, push it to Amazon ECR and print its
digest-pinned URI, ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME@sha256:..., as the last line
of stdout (progress goes to stderr). Needs the AWS CLI (v2) and Docker.

Options:
  --name NAME           ECR repository (default: $DEFAULT_NAME); created on first use,
                        with scan on push and immutable tags
  --tag TAG             image tag (default: the commit, git rev-parse --short=12 HEAD)
  --dockerfile PATH     Dockerfile to build (default: Dockerfile in the repository root)
  --platform P          target platform (default: $DEFAULT_PLATFORM, what SageMaker runs)
  --region R            AWS region (default: \$AWS_REGION, \$AWS_DEFAULT_REGION, then
                        aws configure get region)
  --profile P           AWS CLI profile, passed to every aws call
  --update-config FILE  write the pushed image URI into the image_uri: line of this YAML
                        job config; every other line, comments included, is kept. The
                        image is pushed to FILE's region (its region: key), where the job
                        runs, as SageMaker pulls images only from ECR in its own region.
                        FILE's own uncommitted changes do not count for --allow-dirty:
                        the image does not hold it
  --allow-dirty         build although the working tree has uncommitted changes; the
                        default tag then gets a -dirty-YYYYmmddTHHMMSSZ suffix, so the
                        image is never taken for the committed code or for another
                        dirty build
  --dry-run             run only the read-only checks and print (on stdout) the commands
                        that would change something, instead of running them
  -h, --help            show this help

Tags: the default tag names the commit; a non-default --platform or --dockerfile adds a
suffix (e.g. COMMIT-arm64, COMMIT-docker-gpu.dockerfile) so that different builds of one
commit never share a tag. Tags are immutable in the repository, so when the tag is
already there the build and push are skipped and the existing image's URI is printed.

Exit codes:
  0   success: image pushed, or already in ECR
  1   unexpected error
  $E_USAGE   bad usage
  $E_NO_AWS   AWS CLI (aws) not found on PATH
  $E_NO_DOCKER   Docker CLI (docker) not found on PATH
  $E_DOCKER_DOWN   Docker daemon not answering (docker info failed)
  $E_NO_CREDENTIALS   no usable AWS credentials (aws sts get-caller-identity failed)
  $E_NO_REGION   no AWS region given or configured
  $E_DIRTY   uncommitted changes in the working tree (commit them, or --allow-dirty)
  $E_NO_COMMIT   no commit to derive the tag from (not a git repository, or no commits)
  $E_ECR  ECR repository or image lookup, or repository creation, failed
  $E_LOGIN  docker login to ECR failed
  $E_BUILD  docker build failed
  $E_PUSH  docker push failed (e.g. denied)
  $E_DIGEST  the pushed image's digest could not be read back from ECR
  $E_CONFIG  --update-config file unreadable, without exactly one image_uri: key, or in
      another region than --region
EOF
}

say() {
    printf '%s: %s\n' "$prog" "$*" >&2
}

# die CODE MESSAGE [DETAIL...]: every line of the DETAILs is printed indented below.
die() {
    local code="$1" message="$2" detail line
    shift 2
    printf '%s: error: %s\n' "$prog" "$message" >&2
    for detail in "$@"; do
        while IFS= read -r line; do
            if [[ -n "$line" ]]; then
                printf '    %s\n' "$line" >&2
            fi
        done <<<"$detail"
    done
    exit "$code"
}

usage_error() {
    die "$E_USAGE" "$1" "run '$prog --help' for usage"
}

# Print a command as a shell-quoted line: dry-run output can be read or pasted as is.
quote_cmd() {
    local out="" arg plain='^[A-Za-z0-9_./:=@%+,-]+$'
    for arg in "$@"; do
        if [[ "$arg" =~ $plain ]]; then
            out+="$arg "
        else
            out+="'${arg//\'/\'\\\'\'}' "
        fi
    done
    printf '%s\n' "${out% }"
}

dry_run_print() {
    printf 'dry-run: %s\n' "$*"
}

# The tail of a captured error output, as separate lines for die.
error_lines() {
    local line lines=()
    while IFS= read -r line; do
        if [[ -n "$line" ]]; then
            lines+=("$line")
        fi
    done < <(tail -n 5 "$1")
    if ((${#lines[@]})); then
        printf '%s\n' "${lines[@]}"
    fi
}

abs_path() {
    local dir
    dir="$(cd "$(dirname -- "$1")" && pwd)" || return 1
    printf '%s/%s\n' "$dir" "$(basename -- "$1")"
}

# --- options ------------------------------------------------------------------------------

name="$DEFAULT_NAME"
tag=""
dockerfile=""
platform="$DEFAULT_PLATFORM"
region=""
profile=""
update_config=""
allow_dirty=0
dry_run=0

set_option() {
    local option="$1" value="$2"
    [[ -n "$value" ]] || usage_error "$option needs a non-empty value"
    case "$option" in
        --name) name="$value" ;;
        --tag) tag="$value" ;;
        --dockerfile) dockerfile="$value" ;;
        --platform) platform="$value" ;;
        --region) region="$value" ;;
        --profile) profile="$value" ;;
        --update-config) update_config="$value" ;;
        *) usage_error "unknown option: $option" ;;
    esac
}

while (($#)); do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --allow-dirty) allow_dirty=1 ;;
        --dry-run) dry_run=1 ;;
        --name | --tag | --dockerfile | --platform | --region | --profile | --update-config)
            (($# >= 2)) || usage_error "$1 needs a value"
            [[ "$2" != -* ]] || usage_error "$1 needs a value, got option $2"
            set_option "$1" "$2"
            shift
            ;;
        --*=*) set_option "${1%%=*}" "${1#*=}" ;;
        *) usage_error "unknown argument: $1" ;;
    esac
    shift
done

name_re='^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$'
[[ "$name" =~ $name_re && ${#name} -ge 2 && ${#name} -le 256 ]] \
    || usage_error "invalid ECR repository name: $name (lowercase letters, digits, . _ - and /)"

tag_re='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'
if [[ -n "$tag" && ! "$tag" =~ $tag_re ]]; then
    usage_error "invalid tag: $tag (letters, digits, . _ -; at most 128 characters)"
fi

# User paths are relative to where the script was called from; resolve them before
# moving to the repository root, which is the build context.
if [[ -n "$dockerfile" ]]; then
    [[ -f "$dockerfile" ]] || usage_error "no such Dockerfile: $dockerfile"
    dockerfile="$(abs_path "$dockerfile")"
else
    dockerfile="$repo_root/Dockerfile"
fi

# A config that cannot take the result is found out before anything is built.
if [[ -n "$update_config" ]]; then
    [[ -f "$update_config" && -r "$update_config" && -w "$update_config" ]] \
        || die "$E_CONFIG" "--update-config: not a writable file: $update_config"
    update_config="$(abs_path "$update_config")"
    key_count="$(awk '/^[[:space:]]*image_uri[[:space:]]*:/ { n++ } END { print n + 0 }' \
        "$update_config")"
    if ((key_count == 0)); then
        die "$E_CONFIG" "--update-config: $update_config has no image_uri: key" \
            "add a line 'image_uri: ...' where the job config expects the image"
    elif ((key_count > 1)); then
        die "$E_CONFIG" "--update-config: $update_config has $key_count image_uri: keys;" \
            "expected exactly one, so it is unclear which one to rewrite"
    fi
    # The job's region (a top-level region: key), where SageMaker will pull the image from.
    config_region="$(awk '/^region[[:space:]]*:/ {
            value = $0
            sub(/^region[[:space:]]*:[[:space:]]*/, "", value)
            sub(/[[:space:]]+#.*$/, "", value)
            gsub(/["\047\r]/, "", value)
            sub(/[[:space:]]+$/, "", value)
            print value
            exit
        }' "$update_config")"
    if [[ "$config_region" == "null" || "$config_region" == "~" ]]; then
        config_region=""
    fi
    if [[ -n "$config_region" ]]; then
        [[ "$config_region" =~ ^[a-z0-9-]+$ ]] \
            || die "$E_CONFIG" "--update-config: $update_config has region: $config_region, which is not an AWS region name"
        if [[ -n "$region" && "$region" != "$config_region" ]]; then
            die "$E_CONFIG" "--region $region, but the job in $update_config runs in $config_region" \
                "SageMaker pulls images only from ECR in the job's own region: drop --region," \
                "or change the config's region: key"
        fi
        region="$config_region"
        say "pushing to $region, the region of the job in $update_config"
    fi
fi

cd "$repo_root"

tmp_dir="$(mktemp -d "${TMPDIR:-/tmp}/build_and_push.XXXXXX")"
trap 'rm -rf "$tmp_dir"' EXIT
err_file="$tmp_dir/stderr"

# The AWS CLI v2 pipes output through a pager when stdout is a terminal, which would stop
# the script waiting for a key press.
export AWS_PAGER=""

command -v aws >/dev/null 2>&1 \
    || die "$E_NO_AWS" "the AWS CLI (aws) is not on PATH" \
        "install AWS CLI v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"

# --- tag ----------------------------------------------------------------------------------

tag_is_default=0
if [[ -z "$tag" ]]; then
    tag_is_default=1
    command -v git >/dev/null 2>&1 \
        || die "$E_NO_COMMIT" "git is not on PATH, so the tag cannot name a commit" \
            "install git, or pass --tag TAG"
    tag="$(git rev-parse --short=12 HEAD 2>"$err_file")" \
        || die "$E_NO_COMMIT" "cannot name the current commit (git rev-parse HEAD failed):" \
            "$(error_lines "$err_file")" "commit your code first, or pass --tag TAG"
    # Different builds of one commit must not share a tag (see --help).
    if [[ "$platform" != "$DEFAULT_PLATFORM" ]]; then
        platform_suffix="${platform#linux/}"
        tag+="-${platform_suffix//[^A-Za-z0-9_.-]/-}"
    fi
    if [[ "$dockerfile" != "$repo_root/Dockerfile" ]]; then
        # Its path in the repository (docker/gpu.Dockerfile -> docker-gpu.dockerfile), or
        # its file name when it lives elsewhere.
        if [[ "$dockerfile" == "$repo_root"/* ]]; then
            dockerfile_suffix="${dockerfile#"$repo_root"/}"
        else
            dockerfile_suffix="$(basename -- "$dockerfile")"
        fi
        dockerfile_suffix="$(printf '%s' "$dockerfile_suffix" | tr '[:upper:]' '[:lower:]')"
        tag+="-${dockerfile_suffix//[^a-z0-9_.-]/-}"
    fi
fi

# The tag promises that the image holds the committed code: refuse uncommitted changes. The
# --update-config file is left out: the image does not hold it, and the README's walk-through
# edits it (bucket, region, account) before building.
status_args=(status --porcelain)
if [[ -n "$update_config" && "$update_config" == "$repo_root"/* ]]; then
    status_args+=(-- . ":(exclude,literal)${update_config#"$repo_root"/}")
fi
if command -v git >/dev/null 2>&1 && git_status="$(git "${status_args[@]}" 2>/dev/null)"; then
    if [[ -n "$git_status" ]]; then
        if ((allow_dirty)); then
            say "warning: building with uncommitted changes (--allow-dirty)"
            if ((tag_is_default)); then
                tag+="-dirty-$(date -u +%Y%m%dT%H%M%SZ)"
            fi
        else
            changed=()
            while IFS= read -r line; do
                changed+=("$line")
            done < <(printf '%s\n' "$git_status" | head -n 10)
            die "$E_DIRTY" "the working tree has uncommitted changes:" "${changed[@]}" \
                "commit them so the image tag names the code it holds, or pass --allow-dirty"
        fi
    fi
else
    say "warning: not in a git repository; cannot check for uncommitted changes"
fi

((${#tag} <= 128)) || usage_error "the derived tag is longer than 128 characters: pass --tag"

# --- AWS account and region ---------------------------------------------------------------

aws_options=()
[[ -z "$profile" ]] || aws_options+=(--profile "$profile")

awscli() {
    aws "$@" ${aws_options[@]+"${aws_options[@]}"}
}

if [[ -z "$region" ]]; then
    region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
fi
if [[ -z "$region" ]]; then
    region="$(awscli configure get region 2>/dev/null || true)"
fi
[[ -n "$region" ]] \
    || die "$E_NO_REGION" "no AWS region: pass --region, set AWS_REGION, or run" \
        "aws configure set region REGION${profile:+ --profile $profile}"
aws_options+=(--region "$region")

if ! account="$(awscli sts get-caller-identity --query Account --output text 2>"$err_file")" \
    || [[ ! "$account" =~ ^[0-9]{12}$ ]]; then
    die "$E_NO_CREDENTIALS" "no usable AWS credentials (aws sts get-caller-identity failed):" \
        "$(error_lines "$err_file")" \
        "configure credentials (aws configure, or aws sso login${profile:+ --profile $profile})," \
        "or pick another profile with --profile"
fi

dns_suffix="amazonaws.com"
[[ "$region" != cn-* ]] || dns_suffix="amazonaws.com.cn"
registry="$account.dkr.ecr.$region.$dns_suffix"
repository_uri="$registry/$name"
image="$repository_uri:$tag"

# --- ECR lookups --------------------------------------------------------------------------

# Looks up NAME:TAG and sets image_details to "DIGEST<TAB>MANIFEST_MEDIA_TYPE". Returns 1
# when the image is not there; any other failure exits with the code given.
lookup_image() {
    local fail_code="$1"
    if image_details="$(awscli ecr describe-images --repository-name "$name" \
        --image-ids "imageTag=$tag" \
        --query 'imageDetails[0].[imageDigest,imageManifestMediaType]' \
        --output text 2>"$err_file")"; then
        return 0
    fi
    grep -q ImageNotFoundException "$err_file" && return 1
    die "$fail_code" "cannot look up image $name:$tag in ECR:" "$(error_lines "$err_file")"
}

# Prints the pushed URI on stdout (last line) and applies --update-config.
finish() {
    local digest="$1" uri
    [[ "$digest" == sha256:* ]] || die "$E_DIGEST" "ECR returned no digest for $image: $digest"
    uri="$repository_uri@$digest"
    if [[ -n "$update_config" ]]; then
        if ((dry_run)); then
            dry_run_print "set image_uri in $update_config to $uri"
        else
            write_image_uri "$update_config" "$uri" \
                || die "$E_CONFIG" "could not update $update_config; the image is $uri"
            say "set image_uri in $update_config"
        fi
    fi
    printf '%s\n' "$uri"
    exit 0
}

# Rewrites the single image_uri: line of a YAML file in place: the indentation, the quote
# style and a trailing comment are kept, and every other line is copied unchanged.
write_image_uri() {
    local file="$1" uri="$2" rewritten="$tmp_dir/config.yaml"
    awk -v uri="$uri" '
        /^[[:space:]]*image_uri[[:space:]]*:/ {
            match($0, /^[[:space:]]*image_uri[[:space:]]*:/)
            key = substr($0, 1, RLENGTH)
            rest = substr($0, RLENGTH + 1)
            cr = ""
            if (rest ~ /\r$/) { cr = "\r"; sub(/\r$/, "", rest) }
            comment = ""
            if (match(rest, /[[:space:]]+#.*$/)) comment = substr(rest, RSTART)
            value = rest
            sub(/^[[:space:]]+/, "", value)
            quote = substr(value, 1, 1)
            if (quote != "\"" && quote != "\047") quote = ""
            print key " " quote uri quote comment cr
            next
        }
        { print }
    ' "$file" >"$rewritten" || return 1
    # Copy the content rather than move the file: keeps its permissions and any symlink.
    cat "$rewritten" >"$file"
}

repository_exists=1
if ! awscli ecr describe-repositories --repository-names "$name" \
    --query 'repositories[0].repositoryUri' --output text >/dev/null 2>"$err_file"; then
    grep -q RepositoryNotFoundException "$err_file" \
        || die "$E_ECR" "cannot look up ECR repository $name:" "$(error_lines "$err_file")"
    repository_exists=0
fi

if ((repository_exists)) && lookup_image "$E_ECR"; then
    read -r digest _ <<<"$image_details"
    say "$image is already in ECR; skipping build and push"
    finish "$digest"
fi

# --- build and push -----------------------------------------------------------------------

command -v docker >/dev/null 2>&1 \
    || die "$E_NO_DOCKER" "the Docker CLI (docker) is not on PATH" \
        "install Docker Desktop or Docker Engine: https://docs.docker.com/get-docker/"
docker info >/dev/null 2>"$err_file" \
    || die "$E_DOCKER_DOWN" "the Docker daemon is not answering (docker info failed):" \
        "$(error_lines "$err_file")" "start Docker Desktop or the docker service, then retry"

if ((!repository_exists)); then
    create=(ecr create-repository --repository-name "$name"
        --image-scanning-configuration scanOnPush=true --image-tag-mutability IMMUTABLE)
    if ((dry_run)); then
        dry_run_print "$(quote_cmd aws "${create[@]}" "${aws_options[@]}")"
    else
        say "creating ECR repository $name"
        if ! awscli "${create[@]}" >/dev/null 2>"$err_file" \
            && ! grep -q RepositoryAlreadyExistsException "$err_file"; then
            die "$E_ECR" "cannot create ECR repository $name:" "$(error_lines "$err_file")"
        fi
    fi
fi

login_password=(aws ecr get-login-password "${aws_options[@]}")
login=(docker login --username AWS --password-stdin "$registry")
# Without default attestations BuildKit pushes a single image manifest rather than an
# index; SageMaker has been reported to reject image indexes.
build=(docker build --platform "$platform" -f "$dockerfile" -t "$image" .)
push=(docker push "$image")

if ((dry_run)); then
    dry_run_print "$(quote_cmd "${login_password[@]}") | $(quote_cmd "${login[@]}")"
    dry_run_print "BUILDX_NO_DEFAULT_ATTESTATIONS=1 $(quote_cmd "${build[@]}")"
    dry_run_print "$(quote_cmd "${push[@]}")"
    if [[ -n "$update_config" ]]; then
        dry_run_print "set image_uri in $update_config to" \
            "$repository_uri@<digest of the pushed image>"
    fi
    say "dry run: nothing was changed"
    exit 0
fi

say "logging in to $registry"
"${login_password[@]}" | "${login[@]}" >&2 \
    || die "$E_LOGIN" "docker login to $registry failed (see the messages above)"

say "building $image for $platform"
BUILDX_NO_DEFAULT_ATTESTATIONS=1 "${build[@]}" >&2 \
    || die "$E_BUILD" "docker build failed (see the messages above)"

say "pushing $image"
if ! "${push[@]}" 2>&1 | tee "$tmp_dir/push.log" >&2; then
    if grep -qi denied "$tmp_dir/push.log"; then
        die "$E_PUSH" "docker push was denied:" "$(error_lines "$tmp_dir/push.log")" \
            "the credentials need ecr:InitiateLayerUpload, ecr:UploadLayerPart," \
            "ecr:CompleteLayerUpload, ecr:BatchCheckLayerAvailability and ecr:PutImage on $name"
    fi
    die "$E_PUSH" "docker push failed:" "$(error_lines "$tmp_dir/push.log")"
fi

lookup_image "$E_DIGEST" \
    || die "$E_DIGEST" "pushed $image, but ECR does not list it (describe-images)"
read -r digest media_type <<<"$image_details"
if [[ "$media_type" != "$DOCKER_V2_MANIFEST" ]]; then
    say "warning: the pushed manifest is $media_type, not $DOCKER_V2_MANIFEST;" \
        "SageMaker has been reported to reject other manifest types ('Unsupported manifest" \
        "media type'). If a job fails so, build with Docker's classic image store."
fi
finish "$digest"
