"""monitor: a news-watch daemon. Polls feeds, matches watch rules, sends alerts."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/monitor-news/monitor"
