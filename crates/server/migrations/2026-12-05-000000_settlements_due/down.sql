DROP TABLE settlements_due;
