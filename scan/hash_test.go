package scan_test

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
)

func v1Hash(d digest.Digest) (v1.Hash, error) { return v1.NewHash(d.String()) }
