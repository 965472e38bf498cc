package room

// CachedRooms is the number of rooms whose entry the service keeps.
func (s *Service) CachedRooms() int { return s.cachedRooms() }
