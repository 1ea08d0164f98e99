#!/bin/sh
# shipit load balancer recipe: an AWS Application or Network Load
# Balancer's target group (Elastic Load Balancing v2), with the AWS CLI.
#
#   aws-elbv2.sh drain|ready TARGET_GROUP_ARN TARGET_ID [PORT]
#
# `drain` deregisters the target and waits until the target group says it
# is deregistered (the group's deregistration delay is the connection
# draining); `ready` registers it and waits until it is in service (it has
# passed the group's health check). TARGET_ID is an instance id
# (`i-0abc...`) or an IP address, depending on the group's target type.
# The AWS CLI reads its credentials and region as usual (an instance
# profile, AWS_PROFILE, AWS_REGION...). In deploy.yml, with each host's
# instance id in its vars:
#
#   vars: { target_group: "arn:aws:elasticloadbalancing:...:targetgroup/shop/..." }
#   stages:
#     production:
#       load_balancer:
#         drain:   { local: true, run: "sh templates/load_balancer/aws-elbv2.sh drain {{ target_group }} {{ instance_id }}", timeout: 10m }
#         undrain: { local: true, run: "sh templates/load_balancer/aws-elbv2.sh ready {{ target_group }} {{ instance_id }}", timeout: 10m }
#       hosts:
#         - { host: web-1.acme.internal, vars: { instance_id: i-0123456789abcdef0 } }
#
# `aws elbv2 wait` polls every 15 s, 40 times at most: give the commands a
# `timeout` above the group's deregistration delay.
set -eu

usage() {
    echo "usage: aws-elbv2.sh drain|ready TARGET_GROUP_ARN TARGET_ID [PORT]" >&2
    exit 2
}
[ "$#" -ge 3 ] || usage
action=$1
group=$2
target="Id=$3"
if [ "$#" -ge 4 ]; then
    target="$target,Port=$4"
fi

case $action in
    drain)
        aws elbv2 deregister-targets --target-group-arn "$group" --targets "$target"
        aws elbv2 wait target-deregistered --target-group-arn "$group" --targets "$target"
        ;;
    ready)
        aws elbv2 register-targets --target-group-arn "$group" --targets "$target"
        aws elbv2 wait target-in-service --target-group-arn "$group" --targets "$target"
        ;;
    *) usage ;;
esac
