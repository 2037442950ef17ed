"""Channels built from the national platform's catalogue (国家中小学智慧教育平台): see build.py."""
