"""The central school's hub: teaching points, authoring, schedules, publishing and reports (专递课堂).

A hub is a box too (`classbox serve --hub`): it plays lessons in its own classrooms and, on top,
prepares lessons for the teaching points it looks after and pushes them to their boxes.
"""
