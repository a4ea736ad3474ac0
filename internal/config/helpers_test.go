package config

// routeByName returns the route called name.
func (c *Config) routeByName(name string) (*Route, bool) {
	for i := range c.Routes {
		if c.Routes[i].Name == name {
			return &c.Routes[i], true
		}
	}
	return nil, false
}

// line returns the line of the config file a field path ("routes[1].filter")
// was written on, or of its nearest written parent; 0 when unknown.
func (c *Config) line(field string) int { return lineOf(c.meta().lines, field) }
