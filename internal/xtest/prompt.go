package xtest

import (
	"strings"

	"github.com/relayd/relayd/internal/prompt"
)

// Prompt is the text of a message as sent, without the default preamble
// that starts every new chat, for tests that match the rendered prompt.
func Prompt(text string) string {
	return strings.TrimPrefix(text, prompt.DefaultPreamble+"\n\n")
}
