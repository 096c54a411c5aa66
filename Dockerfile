# Multi-stage build: a static tollgate binary on a minimal non-root image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# docker build --build-arg VERSION=$(git describe --tags --always --dirty) .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tollgate ./cmd/tollgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tollgate /usr/local/bin/tollgate
USER 65532:65532
WORKDIR /var/lib/tollgate
ENV TOLLGATE_DATA_DIR=/var/lib/tollgate
EXPOSE 5000 5001
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve", "--admin-listen", "0.0.0.0:5001"]
