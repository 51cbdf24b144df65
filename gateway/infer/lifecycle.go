package infer

// Close gives back every metric the engine and its batch queue
// registered, so that an engine of the same model can register in its
// place (a model reloaded). Call it once the engine serves no more (after
// Quiesce, or once Run has returned); later calls do nothing.
func (e *Engine) Close() {
	e.closing.Do(e.m.unregister)
}
