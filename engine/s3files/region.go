package s3files

import (
	"context"
	"errors"
	"sync"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// FollowRegion returns a client that sends each bucket's requests to the
// bucket's own region once S3 has said that it is not the client's: an
// organization trail's bucket often lives in another region than the one
// the SDK's configuration names, and S3 does not redirect by itself.
func FollowRegion(c Client) Client { return &regional{Client: c, regions: map[string]string{}} }

// regional is FollowRegion's client.
type regional struct {
	Client
	mu      sync.Mutex
	regions map[string]string // bucket → region, learnt from S3's answers
}

func (r *regional) region(bucket string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.regions[bucket]
}

// learn records the bucket's region from err, reporting whether it is
// new (the request is then worth sending again).
func (r *regional) learn(bucket string, err error) bool {
	region, ok := BucketRegion(err)
	if !ok {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.regions[bucket] == region {
		return false
	}
	r.regions[bucket] = region
	return true
}

// with adds the bucket's region, if known, to a call's options.
func (r *regional) with(bucket string, optFns []func(*s3.Options)) []func(*s3.Options) {
	region := r.region(bucket)
	if region == "" {
		return optFns
	}
	out := make([]func(*s3.Options), 0, len(optFns)+1)
	return append(append(out, optFns...), func(o *s3.Options) { o.Region = region })
}

func (r *regional) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	bucket := *in.Bucket
	out, err := r.Client.ListObjectsV2(ctx, in, r.with(bucket, optFns)...)
	if err != nil && r.learn(bucket, err) {
		return r.Client.ListObjectsV2(ctx, in, r.with(bucket, optFns)...)
	}
	return out, err
}

func (r *regional) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	bucket := *in.Bucket
	out, err := r.Client.GetObject(ctx, in, r.with(bucket, optFns)...)
	if err != nil && r.learn(bucket, err) {
		return r.Client.GetObject(ctx, in, r.with(bucket, optFns)...)
	}
	return out, err
}

// BucketRegion returns the bucket's region from S3's answer to a request
// sent to another region (a 301 PermanentRedirect, or a 400 saying the
// authorization header names the wrong region), which carries it in the
// x-amz-bucket-region header.
func BucketRegion(err error) (string, bool) {
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.Response == nil {
		return "", false
	}
	switch re.HTTPStatusCode() {
	case 301, 400:
		if r := re.Response.Header.Get("X-Amz-Bucket-Region"); r != "" {
			return r, true
		}
	}
	return "", false
}
