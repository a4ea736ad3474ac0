package dispatch

import (
	"context"

	"github.com/relayd/relayd/internal/queue"
)

// Queue hands out messages for delivery. It owns per-conversation order: a
// message is leased only when it is the head of its (route, conversation key)
// and no other message of that conversation is leased, so at most one
// request per conversation is ever in flight.
type Queue interface {
	// Next blocks until a message is due and leases it, or ctx ends.
	Next(ctx context.Context) (queue.Lease, error)
}

// ChatStore remembers the Operator chat id of each conversation.
type ChatStore interface {
	// GetChat returns the state, or a zero ChatState (Revision 0) if none.
	GetChat(ctx context.Context, route, key string) (queue.ChatState, error)
	// PutChat stores st if the stored revision still equals st.Revision
	// (0: no record yet), else returns queue.ErrConflict.
	PutChat(ctx context.Context, route, key string, st queue.ChatState) error
	// DeleteChat forgets the conversation's chat; missing is not an error.
	DeleteChat(ctx context.Context, route, key string) error
}

// ChatAcker is a lease that can store its conversation's chat record and
// end itself in one atomic write, so a delivery costs one commit instead of
// two. AckWithChat has PutChat's compare-and-set: on queue.ErrConflict
// nothing is written and the lease stays open. Leases without it get
// PutChat, then Ack.
type ChatAcker interface {
	AckWithChat(ctx context.Context, route, key string, st queue.ChatState) error
}
