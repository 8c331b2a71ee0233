# The sluice binary (controller, standalone runner and CLI in one) on a
# distroless base, running as a non-root user: the image crds/controller
# deploys as sluice:dev.
#
#   docker build -t sluice:dev .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# The whole checkout, .git included (see .dockerignore): `sluice version`
# reports the commit the image was built from.
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/sluice ./cmd/sluice

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice"]
