DROP TABLE widget_visitors;
DROP TABLE widgets;
