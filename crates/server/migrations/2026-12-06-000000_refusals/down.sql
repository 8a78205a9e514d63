DROP FUNCTION anyreply_refuse(text);
