<?xml version="1.0" encoding="UTF-8"?>
<!-- The Gestix export (docs/examples/custom-export.xml) → export records: the worked
     example of docs/inputs.md, "A custom XSLT". -->
<xsl:stylesheet version="3.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:g="urn:example:gestix:export:2"
    xmlns="urn:chorus-gateway:export-records:1"
    exclude-result-prefixes="g">

  <xsl:output method="xml" indent="yes"/>
  <!-- Anything not matched below is left out, text included. -->
  <xsl:mode on-no-match="shallow-skip"/>

  <xsl:template match="/g:export">
    <records>
      <xsl:apply-templates select="g:facture"/>
    </records>
  </xsl:template>

  <xsl:template match="g:facture">
    <xsl:variable name="company" select="../g:societe"/>
    <!-- path() is where the gateway's messages will point: /export/facture[2]… -->
    <invoice source="{path()}">
      <invoice_number><xsl:value-of select="@numero"/></invoice_number>
      <!-- Gestix writes dates DD/MM/YYYY; export records want YYYY-MM-DD. -->
      <issue_date><xsl:value-of select="replace(@date, '^(\d\d)/(\d\d)/(\d{4})$', '$3-$2-$1')"/></issue_date>
      <due_date><xsl:value-of select="replace(@echeance, '^(\d\d)/(\d\d)/(\d{4})$', '$3-$2-$1')"/></due_date>
      <commitment_number><xsl:value-of select="g:engagement"/></commitment_number>
      <supplier_siret><xsl:value-of select="$company/@siret"/></supplier_siret>
      <supplier_name><xsl:value-of select="$company/g:raison-sociale"/></supplier_name>
      <supplier_vat><xsl:value-of select="$company/@tva"/></supplier_vat>
      <supplier_street><xsl:value-of select="$company/g:adresse/@rue"/></supplier_street>
      <supplier_postcode><xsl:value-of select="$company/g:adresse/@cp"/></supplier_postcode>
      <supplier_city><xsl:value-of select="$company/g:adresse/@ville"/></supplier_city>
      <buyer_siret><xsl:value-of select="g:client/@siret"/></buyer_siret>
      <buyer_name><xsl:value-of select="g:client"/></buyer_name>
      <service_code><xsl:value-of select="g:client/@service"/></service_code>
      <xsl:apply-templates select="g:ligne"/>
    </invoice>
  </xsl:template>

  <xsl:template match="g:ligne">
    <line source="{path()}">
      <item_name><xsl:value-of select="."/></item_name>
      <!-- Gestix writes decimal commas; export records want points. -->
      <quantity><xsl:value-of select="translate(@quantite, ',', '.')"/></quantity>
      <unit_code><xsl:value-of select="@unite"/></unit_code>
      <unit_price><xsl:value-of select="translate(@prix, ',', '.')"/></unit_price>
      <vat_rate><xsl:value-of select="translate(@tva, ',', '.')"/></vat_rate>
    </line>
  </xsl:template>

</xsl:stylesheet>
