// Package reply posts the agent's answer to where the people are: GitHub,
// Slack, or a webhook.
//
// A route's reply sinks and reply_template compile once, at load, into a
// Replier. After a turn is delivered, Plan turns the agent's answer into
// Posts: one per sink, and for github_comment one per distinct target (the
// pull request, issue or commit the turn's events came from), so a coalesced
// turn comments once on each. A Post is plain data (JSON-serialisable), made
// to be stored with the turn's acknowledgement and sent, retried and
// dead-lettered on its own: Send delivers one Post, and every error it
// returns is an *Error saying whether to retry and how long to wait first.
//
// Tokens, secrets and webhook URLs (a Slack URL is its own credential) never
// appear in an error or a log line.
package reply
