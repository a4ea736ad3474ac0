package operator

import "github.com/relayd/relayd/internal/jsonstr"

// appendChatBody appends POST /api/chat's body for one user message:
// byte for byte what json.Marshal makes of the chatBody, without its
// reflection (the body is built once per turn).
func appendChatBody(dst []byte, chatID, text string) []byte {
	dst = append(dst, '{')
	if chatID != "" {
		dst = append(dst, `"id":`...)
		dst = jsonstr.AppendMarshal(dst, chatID)
		dst = append(dst, ',')
	}
	dst = append(dst, `"messages":[{"role":"user","parts":[{"type":"text","text":`...)
	dst = jsonstr.AppendMarshal(dst, text)
	return append(dst, `}]}]}`...)
}
