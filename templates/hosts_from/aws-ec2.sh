#!/bin/sh
# shipit `hosts_from` recipe: prints the running EC2 instances tagged for a
# stage, one host a line, with the AWS CLI (its own credentials, region
# and AWS_ENDPOINT_URL apply).
#
#   hosts_from:
#     - { run: "templates/hosts_from/aws-ec2.sh shop-production", roles: [app] }
#
# Usage: aws-ec2.sh TAG_VALUE [FIELD]
#   TAG_VALUE  instances whose tag `shipit:stage` (or $SHIPIT_STAGE_TAG)
#              has this value; an autoscaling group tags the instances it
#              launches (PropagateAtLaunch), so new ones are listed too
#   FIELD      what names a host: `private-ip` (default), `private-dns`,
#              `public-dns`, or `name` (the `Name` tag, e.g. an alias of
#              your ssh config)
set -eu
value=${1:?usage: aws-ec2.sh TAG_VALUE [FIELD]}
field=${2:-private-ip}
tag=${SHIPIT_STAGE_TAG:-shipit:stage}
case "$field" in
  private-ip) query='Reservations[].Instances[].PrivateIpAddress' ;;
  private-dns) query='Reservations[].Instances[].PrivateDnsName' ;;
  public-dns) query='Reservations[].Instances[].PublicDnsName' ;;
  name) query="Reservations[].Instances[].Tags[?Key=='Name'].Value[]" ;;
  *) echo "aws-ec2.sh: unknown field $field (private-ip, private-dns, public-dns, name)" >&2; exit 2 ;;
esac
# A failing `aws` fails the inventory (and so the shipit command), never
# an empty list.
found=$(aws ec2 describe-instances \
  --filters "Name=tag:$tag,Values=$value" "Name=instance-state-name,Values=running" \
  --query "$query" --output text)
printf '%s\n' "$found" | tr '\t' '\n' | grep -v -e '^None$' -e '^$' | sort || true
