<?xml version="1.0" encoding="UTF-8"?>
<!--
  SAP IDoc INVOIC02 (XML, as an SAP file or HTTP port writes it) → export records
  (schemas/export-records.xsd), the built-in stylesheet of input_format = "idoc".

  One <invoice> per IDOC element, one <line> per E1EDP01 segment. Which segment and
  qualifier feeds which field, and why, is in docs/inputs.md ("SAP IDoc INVOIC02");
  keep the two in step.

  To adapt it (SIRET in another field, tax codes of zero-rated lines…), do not edit
  it: write your own stylesheet that imports it and overrides what differs, e.g.

    <xsl:stylesheet version="3.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
        xmlns:xs="http://www.w3.org/2001/XMLSchema">
      <xsl:import href="/path/to/idoc-invoic02-to-records.xsl"/>
      <xsl:variable name="vat-category-of-tax-code" as="map(xs:string, xs:string)"
          select="map{'V0': 'E', 'V5': 'AE'}"/>
    </xsl:stylesheet>

  and give it as the channel's input_stylesheet (input_format = "xslt").

  Values are copied as written, trimmed; converting is limited to what the IDoc format
  itself dictates (YYYYMMDD dates, SAP's trailing minus sign, price units). A value
  that cannot be converted is passed on unchanged, so that the gateway's check names it.
-->
<xsl:stylesheet version="3.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:map="http://www.w3.org/2005/xpath-functions/map"
    xmlns:cg="urn:chorus-gateway:xslt-functions"
    xmlns="urn:chorus-gateway:export-records:1"
    exclude-result-prefixes="#all">

  <xsl:output method="xml" indent="yes" encoding="UTF-8"/>
  <!-- Segments not named below (EDI_DC40, E1EDK14, E1EDKT1…) are ignored, text included. -->
  <xsl:mode on-no-match="shallow-skip"/>

  <!-- The field names this version of the gateway reads, separated by spaces (given by
       the gateway). A field missing from it (the stated totals on an older version) is
       left out rather than refused. Empty: every field is written (running by hand). -->
  <xsl:param name="fields" as="xs:string" select="''"/>
  <xsl:variable name="known-fields" as="xs:string*" select="tokenize($fields)"/>

  <!-- SAP tax code (E1EDP04/MWSKZ) → VAT category (BT-151). Tax codes are defined per
       SAP system, so none is known here: a line with a rate above 0 is S, and a
       zero-rated line needs its tax code in this map (override it by importing). -->
  <xsl:variable name="vat-category-of-tax-code" as="map(xs:string, xs:string)" select="map{}"/>
  <!-- Categories for which EN 16931 wants an exemption reason: E1EDP04/KTEXT gives it. -->
  <xsl:variable name="exempt-categories" as="xs:string*" select="('E', 'AE', 'K', 'G', 'O')"/>

  <xsl:template match="/">
    <records>
      <!-- The root is the basic type (INVOIC02) or an extension of it (ZINVOIC02…). -->
      <xsl:apply-templates select="/*/IDOC"/>
    </records>
  </xsl:template>

  <!-- The source paths are built from position() rather than path(), which counts the
       preceding siblings of each IDOC: quadratic in a file of thousands of IDocs. -->
  <xsl:template match="IDOC">
    <xsl:variable name="source" select="concat('/', name(..), '/IDOC[', position(), ']')"/>
    <xsl:variable name="k01" select="E1EDK01[1]"/>
    <!-- RS invoicing party, else LF vendor; RE bill-to party, else AG sold-to party. -->
    <xsl:variable name="supplier" select="(E1EDKA1[PARVW = 'RS'], E1EDKA1[PARVW = 'LF'])[1]"/>
    <xsl:variable name="buyer" select="(E1EDKA1[PARVW = 'RE'], E1EDKA1[PARVW = 'AG'])[1]"/>
    <invoice source="{$source}">
      <xsl:sequence select="
          cg:field('invoice_number', (E1EDK02[QUALF = '009']/BELNR, $k01/BELNR)),
          cg:field('issue_date', cg:date((E1EDK03[IDDAT = '016']/DATUM, E1EDK03[IDDAT = '026']/DATUM,
                                          E1EDK03[IDDAT = '012']/DATUM, E1EDK02[QUALF = '009']/DATUM))),
          cg:field('type_code', cg:type-code($k01/BSART)),
          cg:field('currency', $k01/CURCY),
          cg:field('due_date', cg:date(E1EDK03[IDDAT = '028']/DATUM)),
          cg:field('service_code', $buyer/IHREZ),
          cg:field('commitment_number', E1EDK02[QUALF = '001']/BELNR),
          cg:field('contract_reference', E1EDK02[QUALF = '005']/BELNR),
          cg:field('supplier_siret', $supplier/PARTN),
          cg:field('supplier_name', $supplier/NAME1),
          cg:field('supplier_vat', $k01/EIGENUINR),
          cg:field('supplier_street', $supplier/STRAS),
          cg:field('supplier_city', $supplier/ORT01),
          cg:field('supplier_postcode', $supplier/PSTLZ),
          cg:field('supplier_country', $supplier/LAND1),
          cg:field('buyer_siret', $buyer/PARTN),
          cg:field('buyer_name', $buyer/NAME1),
          cg:field('buyer_vat', $k01/KUNDEUINR),
          cg:field('buyer_street', $buyer/STRAS),
          cg:field('buyer_city', $buyer/ORT01),
          cg:field('buyer_postcode', $buyer/PSTLZ),
          cg:field('buyer_country', $buyer/LAND1),
          cg:field('total_without_vat', cg:number(E1EDS01[SUMID = '010']/SUMME)),
          cg:field('total_vat', cg:number(E1EDS01[SUMID = '005']/SUMME)),
          cg:field('total_with_vat', cg:number(E1EDS01[SUMID = '011']/SUMME))"/>
      <xsl:apply-templates select="E1EDP01">
        <xsl:with-param name="invoice-source" select="$source"/>
      </xsl:apply-templates>
    </invoice>
  </xsl:template>

  <xsl:template match="E1EDP01">
    <xsl:param name="invoice-source" as="xs:string"/>
    <xsl:variable name="tax" select="E1EDP04[1]"/>
    <xsl:variable name="rate" select="cg:number($tax/MSATZ)"/>
    <xsl:variable name="category" select="cg:vat-category($tax/MWSKZ, $rate)"/>
    <line source="{$invoice-source}/E1EDP01[{position()}]">
      <xsl:sequence select="
          cg:field('line_id', replace(normalize-space(POSEX), '^0+(.)', '$1')),
          cg:field('item_name', (E1EDP19[QUALF = '002']/KTEXT, E1EDP19/KTEXT)),
          cg:field('quantity', cg:number(MENGE)),
          cg:field('unit_code', MENEE),
          cg:field('unit_price', cg:unit-price(.)),
          cg:field('vat_category', $category),
          cg:field('vat_rate', $rate),
          cg:field('vat_exemption_reason', if ($category = $exempt-categories) then $tax/KTEXT else ())"/>
    </line>
  </xsl:template>

  <!-- A field element holding the first non-blank value of $values; nothing if there
       is none (the field is then empty: its default applies) or if the gateway does
       not know the field. -->
  <xsl:function name="cg:field" as="element()?">
    <xsl:param name="name" as="xs:string"/>
    <xsl:param name="values" as="item()*"/>
    <xsl:variable name="value" select="cg:first($values)"/>
    <xsl:if test="exists($value) and (empty($known-fields) or $name = $known-fields)">
      <xsl:element name="{$name}" namespace="urn:chorus-gateway:export-records:1">
        <xsl:value-of select="$value"/>
      </xsl:element>
    </xsl:if>
  </xsl:function>

  <xsl:function name="cg:first" as="xs:string?">
    <xsl:param name="values" as="item()*"/>
    <xsl:sequence select="($values ! normalize-space(string(.)))[. ne ''][1]"/>
  </xsl:function>

  <!-- IDoc dates are YYYYMMDD; 00000000 means none. -->
  <xsl:function name="cg:date" as="xs:string?">
    <xsl:param name="values" as="item()*"/>
    <xsl:variable name="text" select="cg:first($values[normalize-space(.) ne '00000000'])"/>
    <xsl:sequence select="if (matches($text, '^\d{8}$'))
                          then replace($text, '^(\d{4})(\d{2})(\d{2})$', '$1-$2-$3') else $text"/>
  </xsl:function>

  <!-- SAP writes a negative number with its sign last: 12.50- is -12.50. -->
  <xsl:function name="cg:number" as="xs:string?">
    <xsl:param name="values" as="item()*"/>
    <xsl:variable name="text" select="cg:first($values)"/>
    <xsl:sequence select="if (matches($text, '^[0-9.]+-$'))
                          then concat('-', substring($text, 1, string-length($text) - 1)) else $text"/>
  </xsl:function>

  <xsl:function name="cg:decimal" as="xs:boolean">
    <xsl:param name="text" as="xs:string?"/>
    <xsl:sequence select="exists($text) and $text castable as xs:decimal"/>
  </xsl:function>

  <!-- BT-146 is the price of one unit. VPREI is the price of PEINH units (price unit,
       e.g. 100): divided exactly. Without VPREI, the net value (E1EDP26 QUALF 003)
       divided by the quantity. -->
  <xsl:function name="cg:unit-price" as="xs:string?">
    <xsl:param name="item" as="element()"/>
    <xsl:variable name="price" select="cg:number($item/VPREI)"/>
    <xsl:variable name="per" select="cg:number($item/PEINH)"/>
    <xsl:variable name="net" select="cg:number($item/E1EDP26[QUALF = '003']/BETRG)"/>
    <xsl:variable name="quantity" select="cg:number($item/MENGE)"/>
    <xsl:sequence select="
        if (exists($price)) then
          (if (cg:decimal($price) and cg:decimal($per) and xs:decimal($per) gt 0 and xs:decimal($per) ne 1)
           then string(xs:decimal($price) div xs:decimal($per)) else $price)
        else if (cg:decimal($net) and cg:decimal($quantity) and xs:decimal($quantity) ne 0)
        then string(xs:decimal($net) div xs:decimal($quantity))
        else ()"/>
  </xsl:function>

  <!-- The category of a tax code from the map; else S when the rate is above 0; else
       the tax code itself, which the gateway then refuses naming it ('V0' is not an
       accepted code), so that the operator knows which code to map. -->
  <xsl:function name="cg:vat-category" as="xs:string?">
    <xsl:param name="tax-code" as="item()*"/>
    <xsl:param name="rate" as="xs:string?"/>
    <xsl:variable name="code" select="cg:first($tax-code)"/>
    <xsl:sequence select="
        if (exists($code) and map:contains($vat-category-of-tax-code, $code)) then $vat-category-of-tax-code($code)
        else if (cg:decimal($rate) and xs:decimal($rate) gt 0) then 'S'
        else $code"/>
  </xsl:function>

  <!-- E1EDK01/BSART: INVO invoice, CRME credit memo; any other value is passed on and
       refused by the gateway, naming it. -->
  <xsl:function name="cg:type-code" as="xs:string?">
    <xsl:param name="document-type" as="item()*"/>
    <xsl:variable name="code" select="cg:first($document-type)"/>
    <xsl:sequence select="if ($code = 'INVO') then '380' else if ($code = 'CRME') then '381' else $code"/>
  </xsl:function>

</xsl:stylesheet>
