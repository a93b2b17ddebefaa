"""Imported by Python at start-up when this directory is on PYTHONPATH.

When MONITOR_TEST_SLACK_URL is set, Slack requests made by apprise go to that local URL
instead of slack.com (see slack_capture.py). Otherwise it does nothing.
"""

import os

if os.environ.get("MONITOR_TEST_SLACK_URL"):
    import slack_capture

    slack_capture.install(os.environ["MONITOR_TEST_SLACK_URL"])
