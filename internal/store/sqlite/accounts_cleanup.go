package sqlite

// Refresh tokens kept for a retry belong to their device and go with it.
func init() {
	deviceCleanups = append(deviceCleanups, `DELETE FROM superseded_refresh_tokens WHERE user_id = ? AND device_id = ?`)
}
