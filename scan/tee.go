package scan

import (
	"context"

	"github.com/opencontainers/go-digest"
)

// Teer receives copies of blob bytes as they stream through the proxy, on push
// and on pull. It is the only way analysis touches the data path, and it must
// never slow, alter or fail a transfer: implementations buffer boundedly and
// detach (queueing a deferred scan) when analysis cannot keep up.
//
// A nil Teer, or a nil BlobSink from it, means "do not tee".
type Teer interface {
	// Pull returns a sink for the body of a blob GET (or an upstream fetch) of
	// dgst in repo, size bytes long (-1 if unknown); nil when the blob needs no
	// analysis (already analysed, or known not to be a layer).
	Pull(ctx context.Context, repo string, dgst digest.Digest, size int64) BlobSink
	// Upload returns the sink for the body of one request (PATCH or PUT) of
	// upload session id in repo, whose bytes start at offset in the blob. The
	// same session's requests arrive in order; a gap or a resumed upload that
	// rewinds makes the implementation detach (nil sink), and the blob is
	// then analysed later from the registry.
	Upload(ctx context.Context, repo, session string, offset int64) BlobSink
	// UploadDone ends session: dgst is the committed blob digest (the
	// registry answered 201), or empty when the upload was cancelled or failed.
	UploadDone(ctx context.Context, repo, session string, dgst digest.Digest)
}

// BlobSink is one request body's share of a teed blob.
type BlobSink interface {
	// Write copies p and returns at once (len(p), nil); it never blocks on
	// analysis and never reports an error to the transfer. After a detach it
	// discards.
	Write(p []byte) (int, error)
	// Done ends this request's share; complete is true when the body was
	// read to EOF without error.
	Done(complete bool)
}
