package checkpoint_test

import (
	"context"
	"fmt"
	"os"

	"github.com/trailkeeper/trailkeeper/internal/checkpoint"
)

// A cursor that was never saved loads as nil; a saved one survives a new
// store on the same folder.
func ExampleFile() {
	dir, _ := os.MkdirTemp("", "cursors")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, _ := checkpoint.NewFile(dir)
	cur, _ := s.Load(ctx, "aws/123456789012/us-east-1")
	fmt.Println(cur == nil)
	_ = s.Save(ctx, "aws/123456789012/us-east-1", []byte(`{"t":"2024-05-01T10:00:00Z"}`))

	s2, _ := checkpoint.NewFile(dir)
	cur, _ = s2.Load(ctx, "aws/123456789012/us-east-1")
	fmt.Println(string(cur))
	// Output:
	// true
	// {"t":"2024-05-01T10:00:00Z"}
}
