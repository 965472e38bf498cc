package room

// CachedRooms is the number of rooms whose entry the service keeps, and
// their state events as last counted.
func (s *Service) CachedRooms() (rooms, stateEvents int) { return s.cachedRooms() }
