# kube-aws as a container image: the AWS service broker add-on runs it as
# `kube-aws broker serve …` (set addons.awsServiceBroker.image to where you push it).
#   docker build -t registry.example.com/kube-aws:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin kube-aws

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kube-aws /usr/local/bin/kube-aws
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/kube-aws"]
