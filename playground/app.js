// The playground (filled in next).
