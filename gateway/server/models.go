package server

import (
	"net/url"
	"slices"

	"github.com/gofiber/fiber/v2"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/fleet"
	"github.com/embedgate/embedgate/gateway/openai"
	"github.com/embedgate/embedgate/gateway/tei"
)

// served is one served model as the server sees it: the names a request's
// model matches and the engine that serves them.
type served struct {
	names []string // the name, then the aliases
	task  string   // gateway.TaskEmbed or TaskRerank
	eng   engine
}

// name is the model's served name: what responses and log lines call it.
func (m served) name() string { return m.names[0] }

// info is the engine's Info under the names lookup matches.
func (m served) info() gateway.Info {
	in := m.eng.Info()
	in.Name, in.Aliases = m.name(), m.names[1:]
	return in
}

// catalog is what the server uses of *fleet.Fleet: the served models by
// name. It exists, as engine does, so tests can serve fakes; production
// passes the fleet (fleetCatalog).
type catalog interface {
	// lookup finds a model by name or alias; "" is the default model.
	// Whether an unknown name finds the default (one-model mode) is the
	// fleet's rule, not the server's.
	lookup(name string) (served, bool)
	// defaultFor is the model of the requests naming none on the routes
	// of task: the default if it does task, else the catalogue's first
	// that does (fleet.DefaultFor); ok is false when none does.
	defaultFor(task string) (served, bool)
	// list is every served model, the default first.
	list() []served
	// single is the one served model, when exactly one is served.
	single() (served, bool)
}

// fleetCatalog is the catalog of a *fleet.Fleet.
type fleetCatalog struct{ f *fleet.Fleet }

func (c fleetCatalog) lookup(name string) (served, bool) {
	m, ok := c.f.Lookup(name)
	if !ok {
		return served{}, false
	}
	return servedOf(m)
}

func (c fleetCatalog) defaultFor(task string) (served, bool) {
	m, ok := c.f.DefaultFor(task)
	if !ok {
		return served{}, false
	}
	return servedOf(m)
}

func (c fleetCatalog) list() []served {
	all := c.f.List()
	out := make([]served, 0, len(all))
	for _, m := range all {
		if sm, ok := servedOf(m); ok {
			out = append(out, sm)
		}
	}
	return out
}

func (c fleetCatalog) single() (served, bool) {
	all := c.f.List()
	if len(all) != 1 {
		return served{}, false
	}
	return servedOf(all[0])
}

// servedOf is m as the server serves it; a model without an engine is not
// served (a nil *infer.Engine would make a non-nil engine).
func servedOf(m *fleet.Model) (served, bool) {
	if m == nil || m.Engine == nil {
		return served{}, false
	}
	return served{names: append([]string{m.Name}, m.Aliases...), task: m.Task, eng: m.Engine}, true
}

// errNoModel answers requests while no model is served: at start, before
// the first one is open, or when none could be.
func errNoModel() error {
	return &gateway.Error{Kind: gateway.Unhealthy, Msg: "no model is being served"}
}

// model is the model a request names ("" = the default for task), if the
// request's key may use it and it does task ("" = any task), and goes on
// the record for the log line. A model that is not served and one the key
// may not use are the same ModelNotFound, so a key cannot learn what else
// the gateway serves; nor, then, what the model does.
func (s *Server) model(rec *record, name, task string) (served, error) {
	m, ok := s.lookup(name, task)
	switch {
	case !ok && name == "":
		return served{}, errNoModel()
	case !ok:
		return served{}, gateway.UnknownModel(name)
	case rec.key != nil && !rec.key.MayUse(m.names):
		if name == "" {
			name = m.name()
		}
		return served{}, gateway.UnknownModel(name)
	case task != "" && m.task != task:
		return served{}, gateway.WrongTaskError(m.name(), m.task)
	}
	rec.model, rec.task = m.name(), m.task
	return m, nil
}

// lookup finds the model name names. A request naming none goes to the
// default model of its route's task; when no model does the task, to the
// default model, which model refuses as the wrong task: the client learns
// that nothing here does it.
func (s *Server) lookup(name, task string) (served, bool) {
	if name == "" && task != "" {
		if m, ok := s.models.defaultFor(task); ok {
			return m, true
		}
	}
	return s.models.lookup(name)
}

// defaultModel is the model of requests that name none, for probes and
// for what every request needs before its model is known.
func (s *Server) defaultModel() (served, error) {
	m, ok := s.models.lookup("")
	if !ok {
		return served{}, errNoModel()
	}
	return m, nil
}

// usable is every served model the request's key may use, the default
// first.
func (s *Server) usable(rec *record) []served {
	all := s.models.list()
	if rec.key == nil {
		return all
	}
	return slices.DeleteFunc(all, func(m served) bool { return !rec.key.MayUse(m.names) })
}

// handleModels is GET /v1/models: every name and alias of every model the
// key may use, as OpenAI lists models.
func (s *Server) handleModels() fiber.Handler {
	return func(c *fiber.Ctx) error {
		var listed []openai.Listed
		for _, m := range s.usable(recordOf(c)) {
			for _, n := range m.names {
				listed = append(listed, openai.Listed{ID: n, Task: m.task})
			}
		}
		b, err := openai.EncodeModels(listed, s.started.Unix())
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		c.Response().SetBody(b)
		return nil
	}
}

// handleModel is GET /v1/models/{id}. Ids may hold slashes
// ("BAAI/bge-small-en-v1.5"), hence a wildcard route; OpenAI's Node SDK
// sends them escaped ("BAAI%2Fbge-small-en-v1.5"), its Python SDK as they
// are, and both find the model.
func (s *Server) handleModel() fiber.Handler {
	return func(c *fiber.Ctx) error {
		id := c.Params("*")
		if u, err := url.PathUnescape(id); err == nil {
			id = u
		}
		if id == "" {
			return gateway.UnknownModel(id)
		}
		m, err := s.model(recordOf(c), id, "")
		if err != nil {
			return err
		}
		if !slices.Contains(m.names, id) {
			id = m.name() // one-model mode: any name finds the model, which keeps its own
		}
		b, err := openai.EncodeModel(openai.Listed{ID: id, Task: m.task}, s.started.Unix())
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		c.Response().SetBody(b)
		return nil
	}
}

// handleInfo is GET /info: TEI's description of the default model, or of
// ?model=, with every model the key may use under "models".
func (s *Server) handleInfo() fiber.Handler {
	return func(c *fiber.Ctx) error {
		rec := recordOf(c)
		all := s.usable(rec)
		name := c.Query("model")
		if def, ok := s.lookup("", ""); name == "" && ok && rec.key != nil && !rec.key.MayUse(def.names) && len(all) > 0 {
			// A key that may not use the default model is told about the
			// first model it may use, not refused.
			name = all[0].name()
		}
		m, err := s.model(rec, name, "")
		if err != nil {
			return err
		}
		infos := make([]gateway.Info, len(all))
		for i, u := range all {
			infos[i] = u.info()
		}
		b, err := tei.EncodeInfo(m.info(), infos)
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		c.Response().SetBody(b)
		return nil
	}
}
