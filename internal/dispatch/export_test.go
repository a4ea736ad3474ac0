package dispatch

// SetChatter swaps the Operator client; call Resume afterwards so a pause
// is re-probed at once.
func (d *Dispatcher) SetChatter(api Chatter) { d.setChatter(api) }
